#!/usr/bin/env node
'use strict';
// End-to-end test of examples/chat in headless Chromium, against a running
// `wsx hub --config examples/chat/hub.toml --static <copy of examples/chat>`.
// scripts/chat.sh starts the hub and runs this; run with --help for the options.

const fs = require('fs');
const path = require('path');

const USAGE = `usage: chat_test.js --url http://127.0.0.1:PORT/ --api-key KEY [options]
       chat_test.js --list

Two users (two browser contexts: separate storage, separate connections) use the
chat page served at URL, through its UI only. Prints one line per case on stdout,
  PASS <case>      or      FAIL <case>: <why>
in the order of --list; a case after a failed one that it depends on fails as
"not run". The cases are one scenario, run in order. Logs (each page's console
with the SDK's debug output, WebSocket events) go to --out.
Exit status: 0 when every case passed, 1 otherwise, 2 on a usage error or when
the browser could not be driven.

options:
  --url URL          the hub's HTTP address, serving the chat page (required)
  --api-key KEY      the hub's server API key (required)
  --chromium PATH    browser binary (default: $CHROMIUM or /usr/bin/chromium)
  --out DIR          log folder (default: none)
  --timeout S        time limit for the whole scenario in seconds (default: 90)
  --list             print the cases, run nothing
  --help             this text (and a self-check that playwright-core loads)
`;

const CASES = [
  ['page', 'both pages load the chat and the SDK (no page error)'],
  ['connect', 'Alice joins room "lobby": indicator "connected", her hello in presence'],
  ['history-on-join', 'Bob joins after 3 messages (2 from Alice, 1 via the API): he sees them, in order, once'],
  ['presence', 'each sees both names in the presence list (join events and presence())'],
  ['live', 'messages typed by each appear on both pages, in the same order'],
  ['offline', 'Bob goes offline: his WebSocket closes, indicator "reconnecting"'],
  ['missed', 'while Bob is offline, 3 API publications and 3 messages from Alice: Alice sees them, Bob not yet'],
  ['recovery', 'Bob back online: "connected" again, and he shows every message exactly once, in order, as Alice and the hub\'s history do'],
  ['presence-after-reconnect', "Alice's presence list names Bob's new connection, and drops the old one"],
  ['reload', "Bob reloads: back in the room by the link, history shows the same messages"],
  ['rooms', 'Bob moves to room "side": empty room, Alice sees him leave, his message there stays out of "lobby"'],
];

function log(line) {
  process.stderr.write(`${line}\n`);
}

function parseArgs(argv) {
  const opts = {};
  const flags = new Set(['help', 'list']);
  const values = new Set(['url', 'api-key', 'chromium', 'out', 'timeout']);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const k = a.slice(2);
    if (flags.has(k)) opts[k] = true;
    else if (values.has(k)) {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      opts[k] = argv[++i];
    } else throw new Error(`unknown option ${a}`);
  }
  if (opts.timeout !== undefined) {
    opts.timeout = Number(opts.timeout);
    if (!(opts.timeout > 0)) throw new Error('--timeout must be a positive number');
  }
  return opts;
}

class CaseFailure extends Error {}

function fail(msg) {
  throw new CaseFailure(msg);
}

function short(v, limit = 400) {
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  return s.length > limit ? `${s.slice(0, limit)}... (${s.length} chars)` : s;
}

// The page's state, read from the DOM only.
function readPage() {
  const status = document.getElementById('status');
  const error = document.getElementById('error');
  return {
    state: status.dataset.state,
    statusText: status.textContent,
    error: error.hidden ? '' : error.textContent,
    room: document.getElementById('room-title').textContent,
    messages: [...document.querySelectorAll('#messages > li')].map((li) => ({
      offset: Number(li.dataset.offset),
      name: li.querySelector('.name').textContent,
      text: li.querySelector('.text').textContent,
    })),
    presence: [...document.querySelectorAll('#presence > li')].map((li) => ({
      client: li.dataset.client,
      label: li.textContent,
    })),
    statusLog: window.__statusLog || [],
  };
}

// Records every data-state of #status (test instrumentation, not part of the page).
function recordStatus() {
  window.__statusLog = [];
  document.addEventListener('DOMContentLoaded', () => {
    const el = document.getElementById('status');
    if (!el) return;
    const note = () => {
      const log = window.__statusLog;
      if (log[log.length - 1] !== el.dataset.state) log.push(el.dataset.state);
    };
    note();
    new MutationObserver(note).observe(el, { attributes: true, attributeFilter: ['data-state'] });
  });
}

const sameMessages = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const fmt = (msgs) => msgs.map((m) => `${m.offset}:${m.name}:${m.text}`).join(' | ');

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`${e.message}\n\n${USAGE}`);
    return 2;
  }
  if (opts.list) {
    for (const [name, what] of CASES) process.stdout.write(`${name.padEnd(26)} ${what}\n`);
    return 0;
  }
  const { chromium } = require('playwright-core');
  if (opts.help) {
    process.stdout.write(USAGE);
    process.stdout.write(`playwright-core ${require('playwright-core/package.json').version} loaded\n`);
    return 0;
  }
  if (!opts.url || !opts['api-key']) {
    process.stderr.write(USAGE);
    return 2;
  }
  const base = new URL(opts.url);
  const apiKey = opts['api-key'];
  const deadline = Date.now() + (opts.timeout || 90) * 1000;
  const outDir = opts.out || null;
  if (outDir) fs.mkdirSync(outDir, { recursive: true });
  const T0 = Date.now();
  const stamp = () => ((Date.now() - T0) / 1000).toFixed(3).padStart(7);
  const logs = {};
  const pageLog = (who, line) => {
    (logs[who] = logs[who] || []).push(`[${stamp()}] ${line}`);
  };
  // Time left for one wait: never past the scenario's deadline.
  const left = (ms) => {
    const rest = deadline - Date.now();
    if (rest <= 0) fail('the scenario ran out of time (--timeout)');
    return Math.min(ms, rest);
  };

  async function api(method, body) {
    const res = await fetch(new URL(`/api/${method}`, base), {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-API-Key': apiKey },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(left(5000)),
    });
    const text = await res.text();
    let json;
    try {
      json = JSON.parse(text);
    } catch (e) {
      fail(`API ${method}: HTTP ${res.status}, not JSON: ${short(text)}`);
    }
    if (res.status !== 200 || json.error) fail(`API ${method} ${short(body)}: HTTP ${res.status} ${short(json)}`);
    return json.result || {};
  }

  let browser;
  const users = {};

  // A user: one browser context (own storage, own connection) with one page.
  async function newUser(who) {
    const context = await browser.newContext();
    await context.addInitScript(recordStatus);
    const page = await context.newPage();
    const user = { who, context, page, sockets: [] };
    page.on('console', (m) => pageLog(who, `console.${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => {
      pageLog(who, `pageerror: ${e.message}`);
      (user.pageErrors = user.pageErrors || []).push(e.message);
    });
    page.on('requestfailed', (r) => pageLog(who, `request failed: ${r.url()} ${r.failure() && r.failure().errorText}`));
    page.on('websocket', (ws) => {
      const rec = { url: ws.url(), closed: false, frames: [] };
      user.sockets.push(rec);
      pageLog(who, `websocket #${user.sockets.length} opened: ${ws.url()}`);
      ws.on('close', () => {
        rec.closed = true;
        pageLog(who, `websocket #${user.sockets.indexOf(rec) + 1} closed`);
      });
      ws.on('socketerror', (e) => pageLog(who, `websocket #${user.sockets.indexOf(rec) + 1} error: ${e}`));
      // The protocol, as sent and received: JSON commands and replies, one a line.
      const frame = (dir) => (f) => {
        const n = user.sockets.indexOf(rec) + 1;
        for (const line of String(f.payload).split('\n')) {
          if (!line) continue;
          pageLog(who, `ws#${n} ${dir} ${short(line, 2000)}`);
          try {
            rec.frames.push({ dir, msg: JSON.parse(line) });
          } catch (e) {
            rec.frames.push({ dir, raw: line });
          }
        }
      };
      ws.on('framesent', frame('>'));
      ws.on('framereceived', frame('<'));
    });
    users[who] = user;
    return user;
  }

  const read = (u) => u.page.evaluate(readPage);

  // Polls the page until pred(state) holds; fails with `what` and the last state.
  async function waitPage(u, what, pred, ms = 10000) {
    const end = Date.now() + left(ms);
    let st;
    for (;;) {
      st = await read(u);
      if (pred(st)) return st;
      if (Date.now() >= end) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    fail(`${u.who}: timed out after ${ms / 1000} s waiting for ${what}; page: state=${st.state} ` +
      `error=${short(st.error)} messages=[${fmt(st.messages)}] presence=${short(st.presence)}`);
  }

  async function joinAs(u, name, room) {
    const url = new URL('/?debug', base);
    const resp = await u.page.goto(url.href, { timeout: left(10000) });
    if (!resp || resp.status() !== 200) fail(`${u.who}: GET ${url.href}: ${resp && resp.status()}`);
    const sdk = await u.page.evaluate(() => typeof Centrifuge);
    if (sdk !== 'function') fail(`${u.who}: the SDK did not load (typeof Centrifuge: ${sdk})`);
    await u.page.fill('#name', name, { timeout: left(5000) });
    await u.page.fill('#room', room, { timeout: left(5000) });
    await u.page.click('#join button', { timeout: left(5000) });
  }

  async function say(u, text) {
    await u.page.fill('#text', text, { timeout: left(5000) });
    await u.page.press('#text', 'Enter', { timeout: left(5000) });
  }

  const hasText = (st, text) => st.messages.some((m) => m.text === text);
  const names = (st) => st.presence.map((p) => p.label).sort();

  let alice;
  let bob;
  let bobClientBefore;
  const expected = []; // texts in publication order, as Alice saw them
  let missedTexts = [];
  let socketsBeforeOffline = 0;
  let offlineAt = 0;
  const steps = {
    async page() {
      alice = await newUser('alice');
      bob = await newUser('bob');
      for (const u of [alice, bob]) {
        const resp = await u.page.goto(new URL('/', base).href, { timeout: left(10000) });
        if (!resp || resp.status() !== 200) fail(`${u.who}: GET /: HTTP ${resp && resp.status()}`);
        const st = await read(u);
        if (st.error) fail(`${u.who}: the page shows an error: ${st.error}`);
        const sdk = await u.page.evaluate(() => typeof Centrifuge);
        if (sdk !== 'function') fail(`${u.who}: typeof Centrifuge is ${sdk}`);
      }
    },
    async connect() {
      await joinAs(alice, 'Alice', 'lobby');
      await waitPage(alice, 'the indicator "connected"', (st) => st.state === 'connected');
      await waitPage(alice, 'herself in the presence list as "Alice (you)"',
        (st) => names(st).includes('Alice (you)'));
      const st = await read(alice);
      if (st.statusText !== 'connected') fail(`alice: indicator text ${short(st.statusText)}, not "connected"`);
      if (st.room !== '# lobby') fail(`alice: room title ${short(st.room)}`);
    },
    async 'history-on-join'() {
      await say(alice, 'hello from Alice');
      await waitPage(alice, 'her first message', (st) => hasText(st, 'hello from Alice'));
      const r = await api('publish', {
        channel: 'chat:lobby',
        data: { type: 'message', name: 'server', text: 'welcome (server API)' },
      });
      if (typeof r.offset !== 'number' || typeof r.epoch !== 'string') {
        fail(`API publish into a channel with history: result ${short(r)} has no offset and epoch`);
      }
      await say(alice, 'anyone here?');
      const st = await waitPage(alice, 'three messages', (s) => s.messages.length >= 3);
      expected.push('hello from Alice', 'welcome (server API)', 'anyone here?');
      const got = st.messages.map((m) => m.text);
      if (!sameMessages(got, expected)) fail(`alice shows [${fmt(st.messages)}], expected texts ${short(expected)}`);
      await joinAs(bob, 'Bob', 'lobby');
      await waitPage(bob, 'the indicator "connected"', (s) => s.state === 'connected');
      const sb = await waitPage(bob, 'the 3 messages of the history', (s) => s.messages.length >= 3);
      // Give a duplicate time to show up.
      await new Promise((r) => setTimeout(r, 300));
      const sb2 = await read(bob);
      if (!sameMessages(sb2.messages, st.messages)) {
        fail(`bob shows [${fmt(sb2.messages)}], alice [${fmt(st.messages)}]`);
      }
      const authors = sb.messages.map((m) => m.name).join(',');
      if (authors !== 'Alice,server,Alice') fail(`bob: authors ${authors}, expected Alice,server,Alice`);
    },
    async presence() {
      await waitPage(alice, 'presence [Alice (you), Bob]',
        (st) => sameMessages(names(st), ['Alice (you)', 'Bob']), 10000);
      const sb = await waitPage(bob, 'presence [Alice, Bob (you)]',
        (st) => sameMessages(names(st), ['Alice', 'Bob (you)']), 10000);
      bobClientBefore = sb.presence.find((p) => p.label === 'Bob (you)').client;
    },
    async live() {
      await say(bob, 'hi Alice, Bob here');
      await waitPage(alice, "Bob's message", (st) => hasText(st, 'hi Alice, Bob here'));
      await say(alice, 'hi Bob');
      await waitPage(bob, "Alice's reply", (st) => hasText(st, 'hi Bob'));
      expected.push('hi Alice, Bob here', 'hi Bob');
      const sa = await waitPage(alice, 'her own reply', (st) => hasText(st, 'hi Bob'));
      const sb = await read(bob);
      if (!sameMessages(sa.messages, sb.messages)) fail(`alice [${fmt(sa.messages)}] but bob [${fmt(sb.messages)}]`);
      if (!sameMessages(sa.messages.map((m) => m.text), expected)) fail(`alice [${fmt(sa.messages)}], expected ${short(expected)}`);
    },
    async offline() {
      const open = bob.sockets.filter((s) => !s.closed);
      if (open.length !== 1) fail(`bob has ${open.length} open WebSockets before going offline (1 expected)`);
      socketsBeforeOffline = bob.sockets.length;
      await bob.context.setOffline(true);
      offlineAt = Date.now();
      await waitPage(bob, 'the indicator "reconnecting"', (st) => st.state === 'reconnecting', 10000);
      const end = Date.now() + left(5000);
      while (!open[0].closed && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
      if (!open[0].closed) fail("bob's WebSocket is still open 5 s after going offline");
      const st = await read(bob);
      if (st.statusText !== 'reconnecting…') fail(`bob: indicator text ${short(st.statusText)}`);
    },
    async missed() {
      const texts = [];
      for (let i = 1; i <= 3; i++) {
        const t = `missed ${i} (server API)`;
        await api('publish', { channel: 'chat:lobby', data: { type: 'message', name: 'server', text: t } });
        texts.push(t);
        const t2 = `missed ${i} (Alice)`;
        await say(alice, t2);
        // In this order: wait until shown before the next one.
        await waitPage(alice, `"${t2}"`, (st) => hasText(st, t2));
        texts.push(t2);
      }
      expected.push(...texts);
      missedTexts = texts;
      const sa = await read(alice);
      if (!sameMessages(sa.messages.map((m) => m.text), expected)) {
        fail(`alice [${fmt(sa.messages)}], expected ${short(expected)}`);
      }
      // Offline long enough for the SDK to try to reconnect (its first delay is
      // 0.5 to 1 s): the attempts must fail while offline.
      const hold = offlineAt + 2500 - Date.now();
      if (hold > 0) await new Promise((r) => setTimeout(r, left(hold)));
      const sb = await read(bob);
      const early = sb.messages.filter((m) => texts.includes(m.text));
      if (early.length) fail(`bob shows messages published while offline: [${fmt(early)}]`);
      if (sb.state !== 'reconnecting') fail(`bob's indicator is ${sb.state} while offline`);
    },
    async recovery() {
      await bob.context.setOffline(false);
      await waitPage(bob, 'the indicator "connected"', (st) => st.state === 'connected', 15000);
      const sa = await read(alice);
      await waitPage(bob, `all ${sa.messages.length} messages`, (st) => st.messages.length >= sa.messages.length, 10000);
      await new Promise((r) => setTimeout(r, 500)); // time for a duplicate to show
      const sb = await read(bob);
      if (!sameMessages(sb.messages, sa.messages)) {
        fail(`after reconnecting bob shows [${fmt(sb.messages)}], alice [${fmt(sa.messages)}]`);
      }
      // Recovered by the SDK, not reloaded by the page: Bob's resubscribe on the new
      // connection asks to recover, and the hub's reply carries what he missed.
      // (Attempts made while offline fail at once: net::ERR_INTERNET_DISCONNECTED.)
      const fresh = bob.sockets.slice(socketsBeforeOffline).filter((s) => s.frames.some((f) => f.dir === '<'));
      if (fresh.length !== 1) fail(`bob reconnected over ${fresh.length} WebSockets (1 expected)`);
      const frames = fresh[0].frames;
      const cmd = frames.find((f) => f.dir === '>' && f.msg && f.msg.subscribe && f.msg.subscribe.channel === 'chat:lobby');
      if (!cmd) fail(`bob sent no subscribe to chat:lobby on the new connection`);
      if (cmd.msg.subscribe.recover !== true) fail(`bob's resubscribe does not ask to recover: ${short(cmd.msg)}`);
      const reply = frames.find((f) => f.dir === '<' && f.msg && f.msg.id === cmd.msg.id);
      if (!reply) fail(`no reply to bob's resubscribe ${short(cmd.msg)}`);
      const res = reply.msg.subscribe;
      if (!res || res.recovered !== true || res.was_recovering !== true) {
        fail(`resubscribe ${short(cmd.msg)} answered ${short(reply.msg)} (recovered and was_recovering true expected)`);
      }
      const recovered = (res.publications || []).filter((p) => p.data && p.data.type === 'message').map((p) => p.data.text);
      if (!sameMessages(recovered, missedTexts)) {
        fail(`the hub recovered messages ${short(recovered)}, bob missed ${short(missedTexts)}; reply ${short(reply.msg, 1500)}`);
      }
      const seq = sb.statusLog.join(' > ');
      if (!/connected > reconnecting > connected$/.test(seq)) fail(`bob's indicator went ${seq}`);
      // The hub's own record of the room.
      const h = await api('history', { channel: 'chat:lobby', limit: 100 });
      const pubs = (h.publications || []).filter((p) => p.data && p.data.type === 'message');
      const fromHub = pubs.map((p) => ({ offset: p.offset, name: p.data.name, text: p.data.text }));
      if (!sameMessages(fromHub, sb.messages)) fail(`the hub's history has [${fmt(fromHub)}], bob [${fmt(sb.messages)}]`);
      if (bob.sockets.filter((s) => !s.closed).length !== 1) fail(`bob has ${bob.sockets.filter((s) => !s.closed).length} open WebSockets`);
    },
    async 'presence-after-reconnect'() {
      const sb = await waitPage(bob, 'presence [Alice, Bob (you)]',
        (st) => sameMessages(names(st), ['Alice', 'Bob (you)']), 10000);
      const bobClient = sb.presence.find((p) => p.label === 'Bob (you)').client;
      if (bobClient === bobClientBefore) fail(`bob's client id did not change (${bobClient}): not a new connection?`);
      await waitPage(alice, `Bob's new connection (${bobClient}) named in her list`,
        (st) => st.presence.some((p) => p.client === bobClient && p.label === 'Bob'), 10000);
      await waitPage(alice, `Bob's old connection (${bobClientBefore}) gone from her list`,
        (st) => !st.presence.some((p) => p.client === bobClientBefore), 10000);
    },
    async reload() {
      const sa = await read(alice);
      await bob.page.reload({ timeout: left(10000) });
      await waitPage(bob, 'the indicator "connected"', (st) => st.state === 'connected');
      await waitPage(bob, `the ${sa.messages.length} messages`, (st) => st.messages.length >= sa.messages.length);
      await new Promise((r) => setTimeout(r, 300));
      const sb = await read(bob);
      if (sb.room !== '# lobby') fail(`bob's room after reload: ${short(sb.room)}`);
      if (!sameMessages(sb.messages, sa.messages)) fail(`after reload bob shows [${fmt(sb.messages)}], alice [${fmt(sa.messages)}]`);
      await waitPage(alice, 'presence [Alice (you), Bob] again',
        (st) => sameMessages(names(st), ['Alice (you)', 'Bob']), 10000);
    },
    async rooms() {
      await bob.page.click('#rooms a[href="#random"]', { timeout: left(5000) });
      await waitPage(bob, 'room "random"', (st) => st.room === '# random');
      await bob.page.fill('#room', 'side', { timeout: left(5000) });
      await bob.page.click('#join button', { timeout: left(5000) });
      await waitPage(bob, 'room "side" with himself in the list',
        (st) => st.room === '# side' && sameMessages(names(st), ['Bob (you)']));
      const sb = await read(bob);
      if (sb.messages.length) fail(`room "side" shows [${fmt(sb.messages)}]`);
      await waitPage(alice, 'Bob gone from "lobby"', (st) => sameMessages(names(st), ['Alice (you)']));
      await say(bob, 'only in side');
      await waitPage(bob, 'his message in "side"', (st) => hasText(st, 'only in side'));
      await say(alice, 'still in lobby');
      const sa = await waitPage(alice, 'her message', (st) => hasText(st, 'still in lobby'));
      if (hasText(sa, 'only in side')) fail('a message of room "side" shows in "lobby"');
      const sb2 = await read(bob);
      if (hasText(sb2, 'still in lobby')) fail('a message of room "lobby" shows in "side"');
    },
  };

  let code = 0;
  try {
    browser = await chromium.launch({
      executablePath: opts.chromium || process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      chromiumSandbox: false,
      timeout: left(30000),
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  } catch (e) {
    log(`browser launch failed: ${e.message}`);
    for (const [name] of CASES) process.stdout.write(`FAIL ${name}: the browser did not start\n`);
    return 2;
  }
  let broken = null;
  try {
    for (const [name] of CASES) {
      if (broken) {
        process.stdout.write(`FAIL ${name}: not run (${broken} failed)\n`);
        continue;
      }
      pageLog('test', `--- ${name}`);
      try {
        await steps[name]();
        for (const u of Object.values(users)) {
          if (u.pageErrors && u.pageErrors.length) fail(`${u.who}: page error: ${u.pageErrors.join('; ')}`);
        }
        process.stdout.write(`PASS ${name}\n`);
      } catch (e) {
        let why = e instanceof CaseFailure ? e.message : `driver error: ${e.stack || e}`;
        if (!(e instanceof CaseFailure) && Date.now() >= deadline - 100) {
          why = `the scenario ran out of time (--timeout); ${why}`;
        }
        process.stdout.write(`FAIL ${name}: ${why.split('\n').join('\n    ')}\n`);
        pageLog('test', `FAIL ${name}: ${why}`);
        broken = name;
        code = 1;
      }
    }
  } finally {
    await browser.close().catch(() => {});
    if (outDir) {
      for (const [who, lines] of Object.entries(logs)) {
        fs.writeFileSync(path.join(outDir, `${who}.log`), `${lines.join('\n')}\n`);
      }
    }
  }
  return code;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    log(`chat_test.js crashed: ${e.stack || e}`);
    process.exit(2);
  },
);
