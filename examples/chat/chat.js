'use strict';
// A chat on wsx hub with Centrifugo's JavaScript SDK (the global `Centrifuge`, from
// node_modules/centrifuge/dist/centrifuge.js).
//
// Room R is channel chat:R. Publications are JSON objects:
//   {"type": "message", "name": "Alice", "text": "hi"}   a chat message
//   {"type": "hello", "name": "Alice"}                    "this connection is Alice"
// Clients are anonymous (no user id), so names travel in the data: each page says
// hello when it (re)subscribes, and the presence list names a connection after its
// hello or its messages (publication info carries the sender's client id).
//
// Messages are kept in offset order, each once: the history loaded on join, live
// publications and those the SDK recovers after a reconnect may overlap.
(() => {
  const $ = (id) => document.getElementById(id);
  const ROOM = /^[A-Za-z0-9_-]{1,32}$/;
  const ROOMS = ['general', 'random'];
  const HISTORY_LIMIT = 100;

  const ui = {
    status: $('status'),
    error: $('error'),
    joinForm: $('join'),
    name: $('name'),
    room: $('room'),
    chat: $('chat'),
    rooms: $('rooms'),
    presence: $('presence'),
    roomTitle: $('room-title'),
    messages: $('messages'),
    sendForm: $('send'),
    text: $('text'),
  };

  function showError(text) {
    ui.error.textContent = text;
    ui.error.hidden = !text;
  }

  if (typeof Centrifuge === 'undefined') {
    showError('The Centrifugo SDK did not load: run `npm ci` in examples/chat, then reload.');
    ui.joinForm.querySelector('button').disabled = true;
    return;
  }

  // ------------------------------------------------------------ connection
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const debug = new URLSearchParams(location.search).has('debug');
  const client = new Centrifuge(`${scheme}://${location.host}/connection/websocket`, { debug });
  let myClient = ''; // this connection's client id
  let wasConnected = false;

  function setStatus(state, text) {
    ui.status.dataset.state = state;
    ui.status.textContent = text;
  }

  client.on('connecting', (ctx) => {
    if (wasConnected) setStatus('reconnecting', 'reconnecting…');
    else setStatus('connecting', 'connecting…');
    if (debug) console.log('connecting', ctx.code, ctx.reason);
  });
  client.on('connected', (ctx) => {
    wasConnected = true;
    myClient = ctx.client;
    setStatus('connected', 'connected');
  });
  client.on('disconnected', (ctx) => {
    setStatus('disconnected', `disconnected: ${ctx.reason}`);
  });
  client.on('error', (ctx) => console.warn('centrifuge error', ctx.type, ctx.error));

  // ------------------------------------------------------------ room state
  let myName = '';
  let room = '';
  let sub = null;
  let messages = []; // {offset, name, text, el}, by offset
  const names = new Map(); // client id -> name
  let members = new Set(); // client ids in the room

  function resetRoom() {
    messages = [];
    members = new Set();
    ui.messages.replaceChildren();
    renderPresence();
  }

  // One publication (live, recovered or from history), in offset order, each once.
  function addPublication(pub) {
    const data = pub.data || {};
    const sender = pub.info && pub.info.client; // none for the server API's
    if (sender && typeof data.name === 'string') {
      const known = names.get(sender);
      names.set(sender, data.name);
      if (known !== data.name && members.has(sender)) renderPresence();
    }
    if (data.type !== 'message' || typeof data.text !== 'string') return;
    const offset = pub.offset;
    let i = messages.length;
    while (i > 0 && messages[i - 1].offset >= offset) {
      if (messages[i - 1].offset === offset) return; // already shown
      i--;
    }
    const li = document.createElement('li');
    li.dataset.offset = String(offset);
    const who = document.createElement('span');
    who.className = 'name';
    who.textContent = typeof data.name === 'string' && data.name ? data.name : 'someone';
    const text = document.createElement('span');
    text.className = 'text';
    text.textContent = data.text;
    li.append(who, text);
    const list = ui.messages;
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.insertBefore(li, i < messages.length ? messages[i].el : null);
    messages.splice(i, 0, { offset, el: li });
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  function renderPresence() {
    const items = [...members].map((id) => {
      const li = document.createElement('li');
      li.dataset.client = id;
      li.textContent = names.get(id) || `someone (${id.slice(0, 8)})`;
      if (id === myClient) {
        li.classList.add('me');
        li.textContent += ' (you)';
      }
      return li;
    });
    items.sort((a, b) => a.textContent.localeCompare(b.textContent));
    ui.presence.replaceChildren(...items);
  }

  function renderRooms() {
    const all = ROOMS.includes(room) ? ROOMS : [...ROOMS, room];
    ui.rooms.replaceChildren(...all.map((r) => {
      const li = document.createElement('li');
      const a = document.createElement('a');
      a.href = `#${r}`;
      a.textContent = r;
      if (r === room) a.setAttribute('aria-current', 'page');
      li.append(a);
      return li;
    }));
  }

  async function loadHistory(s) {
    try {
      // The newest publications, newest first.
      const res = await s.history({ limit: HISTORY_LIMIT, reverse: true });
      if (s !== sub) return;
      for (const pub of res.publications) addPublication(pub);
    } catch (e) {
      if (s === sub) showError(`history: ${e.message || e.code}`);
    }
  }

  async function loadPresence(s) {
    try {
      const res = await s.presence();
      if (s !== sub) return;
      members = new Set(Object.keys(res.clients));
      renderPresence();
    } catch (e) {
      if (s === sub) showError(`presence: ${e.message || e.code}`);
    }
  }

  function enterRoom(newRoom) {
    if (sub) {
      sub.unsubscribe();
      client.removeSubscription(sub);
      sub = null;
    }
    room = newRoom;
    resetRoom();
    renderRooms();
    ui.roomTitle.textContent = `# ${room}`;
    document.title = `${room} - wsx hub chat`;
    ui.chat.hidden = false;

    // No `recoverable` option: the hub recovers every subscription of a channel with
    // history (on Centrifugo itself, set force_recovery in the namespace).
    const s = client.newSubscription(`chat:${room}`, { joinLeave: true });
    sub = s;
    s.on('subscribed', (ctx) => {
      if (!(ctx.wasRecovering && ctx.recovered)) {
        // First subscribe, or missed publications lost for good: start from history.
        // (After a recovery the missed publications follow as publication events.)
        if (ctx.wasRecovering) resetRoom();
        loadHistory(s);
      }
      members.add(myClient);
      names.set(myClient, myName);
      renderPresence();
      loadPresence(s);
      s.publish({ type: 'hello', name: myName }).catch((e) => {
        if (s === sub) showError(`hello: ${e.message || e.code}`);
      });
    });
    s.on('subscribing', () => {
      // Back in the room once reconnected; presence is reloaded then.
      ui.presence.classList.add('stale');
    });
    s.on('subscribed', () => ui.presence.classList.remove('stale'));
    s.on('publication', (ctx) => addPublication(ctx));
    s.on('join', (ctx) => {
      members.add(ctx.info.client);
      renderPresence();
    });
    s.on('leave', (ctx) => {
      members.delete(ctx.info.client);
      renderPresence();
    });
    s.on('error', (ctx) => console.warn('subscription error', ctx.type, ctx.error));
    s.on('unsubscribed', (ctx) => {
      if (s === sub && ctx.code !== 0) showError(`left ${room}: ${ctx.reason}`);
    });
    s.subscribe();
  }

  // ------------------------------------------------------------ user input
  function join(newRoom) {
    if (!ROOM.test(newRoom)) {
      showError('A room name has 1 to 32 letters, digits, - or _.');
      return;
    }
    showError('');
    if (client.state === 'disconnected') client.connect();
    if (newRoom !== room || !sub) enterRoom(newRoom);
    if (location.hash !== `#${newRoom}`) history.replaceState(null, '', `#${newRoom}`);
    ui.room.value = newRoom;
    ui.text.focus();
  }

  ui.joinForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const name = ui.name.value.trim();
    if (!name) return;
    const renamed = myName && name !== myName;
    myName = name;
    localStorage.setItem('chat.name', name);
    join(ui.room.value.trim());
    if (renamed && sub) {
      names.set(myClient, myName);
      renderPresence();
      sub.publish({ type: 'hello', name: myName }).catch(() => {});
    }
  });

  ui.sendForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const text = ui.text.value;
    if (!text.trim() || !sub) return;
    ui.text.value = '';
    try {
      // Shown when the hub sends it back, like everyone else's messages.
      await sub.publish({ type: 'message', name: myName, text });
    } catch (e) {
      ui.text.value = text;
      showError(`not sent: ${e.message || e.code}`);
    }
  });

  window.addEventListener('hashchange', () => {
    const r = decodeURIComponent(location.hash.slice(1));
    if (myName && r && r !== room) join(r);
  });

  // A returning visitor goes straight back to the room of the link.
  ui.name.value = localStorage.getItem('chat.name') || '';
  const linked = decodeURIComponent(location.hash.slice(1));
  if (linked) ui.room.value = linked;
  if (ui.name.value && linked) ui.joinForm.requestSubmit();
})();
