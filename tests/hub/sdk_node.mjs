#!/usr/bin/env node
// Scenarios of wsx hub with the official Centrifugo JavaScript SDK
// (`centrifuge` on npm, client protocol v2, JSON over WebSocket).
//
//   node sdk_node.mjs SCENARIO --hub http://127.0.0.1:PORT --api-key KEY --secret SECRET
//   node sdk_node.mjs --list
//
// scripts/hub.sh starts the hub with the flags of the case; a scenario relies
// on them (history on, so recovery forced on; presence; join/leave; ...).
// Every check logs a line to stderr ("ok: ..." or "FAIL: ..."); exit status 0
// when all passed, 1 when one failed, 2 on a usage error.
//
// Only public APIs are used: the SDK's, `ws` as the WebSocket the SDK is
// given (Node 20 has no global WebSocket), fetch for the server HTTP API, and
// a TCP proxy of our own between the client and the hub to cut connections.
// HS256 tokens are made with node:crypto.

import { createRequire } from 'node:module';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { Fatal, check, equal, exitWith, failures, log, must, runScenario, short, sleep } from '../lib/checks.mjs';

// CommonJS resolution, so that NODE_PATH (set by scripts/hub.sh to the cached
// node_modules) applies: ESM imports ignore it.
const require = createRequire(import.meta.url);

let ARGS = {};

// ------------------------------------------------------------------ tokens
const b64url = (buf) => Buffer.from(buf).toString('base64url');

function hs256(claims, secret) {
  const input = `${b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64url(JSON.stringify(claims))}`;
  const sig = crypto.createHmac('sha256', secret).update(input).digest();
  return `${input}.${b64url(sig)}`;
}

function unsigned(claims) {
  return `${b64url(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.${b64url(JSON.stringify(claims))}.`;
}

function claims(user, ttl = 3600, extra = {}) {
  const c = { sub: user };
  if (ttl !== null) c.exp = Math.floor(Date.now() / 1000 + ttl);
  return { ...c, ...extra };
}

const token = (user, ttl = 3600, extra = {}) => hs256(claims(user, ttl, extra), ARGS.secret);
const chanToken = (user, channel, ttl = 3600) => hs256(claims(user, ttl, { channel }), ARGS.secret);

// ---------------------------------------------------------------- recorder
// Keeps every event of an SDK object; waits look at the list from a mark on.
class Recorder {
  constructor(label) {
    this.label = label;
    this.events = [];
    this.waiters = new Set();
  }

  watch(emitter, names) {
    for (const name of names) emitter.on(name, (ctx) => this.push(name, ctx));
    return this;
  }

  push(name, ctx) {
    this.events.push({ name, ctx, t: Date.now() });
    log(`${this.label} ${name} ${short(ctx, 200)}`);
    for (const w of this.waiters) w();
  }

  mark() {
    return this.events.length;
  }

  all(name, since = 0) {
    return this.events.slice(since).filter((e) => e.name === name).map((e) => e.ctx);
  }

  names(since = 0) {
    return this.events.slice(since).map((e) => e.name);
  }

  waitFor(name, pred = () => true, ms = 5000, since = 0) {
    return this._wait(() => this.all(name, since).find(pred), ms, `no '${name}' event`);
  }

  waitCount(name, count, ms = 5000, since = 0) {
    return this._wait(() => {
      const got = this.all(name, since);
      return got.length >= count ? got : undefined;
    }, ms, `fewer than ${count} '${name}' events`);
  }

  _wait(probe, ms, what) {
    return new Promise((resolve, reject) => {
      const done = probe();
      if (done !== undefined) return resolve(done);
      const waiter = () => {
        const v = probe();
        if (v !== undefined) {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          resolve(v);
        }
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Fatal(`${this.label}: ${what} within ${ms} ms`));
      }, ms);
      this.waiters.add(waiter);
    });
  }
}

// ------------------------------------------------------------------- proxy
// A TCP forwarder in front of the hub: cut() destroys every connection through
// it (the client sees the network fail, no close frame); block() refuses new
// connections until unblock().
class Proxy {
  constructor(targetPort) {
    this.targetPort = targetPort;
    this.blocked = false;
    this.pairs = new Set();
  }

  start() {
    this.server = net.createServer((down) => {
      if (this.blocked) {
        down.destroy();
        return;
      }
      const up = net.connect(this.targetPort, '127.0.0.1');
      const pair = [down, up];
      this.pairs.add(pair);
      const end = () => {
        down.destroy();
        up.destroy();
        this.pairs.delete(pair);
      };
      down.on('error', end).on('close', end);
      up.on('error', end).on('close', end);
      down.pipe(up);
      up.pipe(down);
    });
    return new Promise((resolve) => {
      this.server.listen(0, '127.0.0.1', () => {
        this.port = this.server.address().port;
        resolve(this);
      });
    });
  }

  cut() {
    const n = this.pairs.size;
    for (const [a, b] of [...this.pairs]) {
      a.destroy();
      b.destroy();
    }
    this.pairs.clear();
    return n;
  }

  close() {
    this.cut();
    this.server.close();
  }
}

// ---------------------------------------------------------------- SDK glue
let Centrifuge;
let WebSocket;
function loadSdk() {
  ({ Centrifuge } = require('centrifuge'));
  WebSocket = require('ws');
}

const CLIENT_EVENTS = ['state', 'connecting', 'connected', 'disconnected', 'error', 'subscribed', 'subscribing',
  'unsubscribed', 'publication', 'join', 'leave'];
const SUB_EVENTS = ['subscribing', 'subscribed', 'unsubscribed', 'publication', 'join', 'leave', 'error'];
const CLIENTS = [];
const CHANNEL = 'news';

function wsUrl(port) {
  const base = port ? `http://127.0.0.1:${port}` : ARGS.hub;
  return `${base.replace(/^http:/, 'ws:').replace(/\/$/, '')}/connection/websocket`;
}

function newClient(label, opts = {}) {
  const { port, ...rest } = opts;
  const c = new Centrifuge(wsUrl(port), {
    websocket: WebSocket,
    minReconnectDelay: 100,
    maxReconnectDelay: 500,
    timeout: 4000,
    debug: process.env.HUB_SDK_DEBUG === '1',
    ...rest,
  });
  const rec = new Recorder(label).watch(c, CLIENT_EVENTS);
  CLIENTS.push(c);
  return { c, rec, label };
}

async function connected(label, user, opts = {}) {
  if (!('token' in opts) && !('getToken' in opts)) opts = { ...opts, token: token(user) };
  const cl = newClient(label, opts);
  cl.c.connect();
  const ctx = await cl.rec.waitFor('connected');
  must(cl.c.state === 'connected' && ctx.client, `${label} connected as '${user}'`);
  cl.id = ctx.client;
  return cl;
}

function newSub(cl, channel = CHANNEL, opts = {}) {
  const s = cl.c.newSubscription(channel, opts);
  const rec = new Recorder(`${cl.label}/${channel}`).watch(s, SUB_EVENTS);
  return { s, rec };
}

async function subscribed(cl, channel = CHANNEL, opts = {}) {
  const sub = newSub(cl, channel, opts);
  sub.s.subscribe();
  sub.ctx = await sub.rec.waitFor('subscribed');
  must(sub.s.state === 'subscribed', `${cl.label} subscribed to '${channel}'`);
  return sub;
}

async function api(method, params, key = ARGS.apiKey) {
  const headers = { 'Content-Type': 'application/json' };
  if (key !== null) headers['X-API-Key'] = key;
  const r = await fetch(`${ARGS.hub.replace(/\/$/, '')}/api/${method}`, {
    method: 'POST',
    headers,
    body: JSON.stringify(params),
  });
  const text = await r.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch (e) {
    body = text;
  }
  return { status: r.status, body };
}

async function apiPublish(data, channel = CHANNEL) {
  const r = await api('publish', { channel, data });
  must(r.status === 200 && r.body && r.body.result && !r.body.error,
    `api publish to '${channel}': 200 with a result (${r.status} ${short(r.body, 200)})`);
  return r.body.result;
}

async function expectError(what, code, promise) {
  try {
    const res = await promise;
    check(false, `${what}: error ${code} expected, got a result ${short(res)}`);
  } catch (e) {
    equal(e && e.code, code, `${what}: error code (${short(e)})`);
  }
}

const datas = (pubs) => pubs.map((p) => p.data);
const offsets = (pubs) => pubs.map((p) => p.offset);
const consecutive = (xs) => xs.every((x, i) => i === 0 || x === xs[i - 1] + 1);

// Publication payloads: JSON values of every kind, non-ASCII text in several
// scripts, escapes, large numbers, nesting and 64 KiB of text. They must come
// back equal as JSON values.
const PAYLOADS = [
  { text: 'héllo wörld ✓ 日本語 Ελληνικά עברית 🎉', n: 1, neg: -7, f: 1.5 },
  { max_safe: 9007199254740991, t: true, f: false, nothing: null, empty: {}, arr: [] },
  { esc: 'quote " backslash \\ slash / nl \n tab \t ctl \u0001 ls \u2028 ps \u2029' },
  { nested: { a: [1, 'two', { three: [3, { four: 4 }] }] } },
  ['a', 'top', 'level', 'array', 1, 2.25],
  'a plain string 🚀',
  42,
  { big: 'z'.repeat(65536) },
];

// --------------------------------------------------------------- scenarios
const SCENARIOS = {
  // Connect with a JWT, subscribe, publish from the client, receive it on
  // another client; data round-trips exactly.
  async pubsub() {
    const info = { name: 'Alice ✓', tags: ['a', 'b'] };
    const A = await connected('A', 'alice', { token: token('alice', 3600, { info }) });
    const B = await connected('B', 'bob');
    check(A.id !== B.id, 'client ids differ');
    const sa = await subscribed(A);
    check(sa.ctx.recoverable === true, 'subscribed context: recoverable (history on, recovery forced)');
    // Centrifugo: "recoverable subscriptions are automatically positioned".
    check(sa.ctx.positioned === true, 'subscribed context: positioned (as every recoverable subscription)');
    check(sa.ctx.streamPosition && typeof sa.ctx.streamPosition.epoch === 'string',
      'subscribed context carries a stream position');
    const sb = await subscribed(B);
    for (const p of PAYLOADS) await sa.s.publish(p);
    check(true, `A published ${PAYLOADS.length} payloads`);
    const gotB = await sb.rec.waitCount('publication', PAYLOADS.length);
    equal(datas(gotB), PAYLOADS, 'B received every payload, in order, equal');
    check(gotB.every((p) => p.info && p.info.user === 'alice' && p.info.client === A.id),
      "each publication carries the publisher's client info (user alice, A's client id)");
    if (gotB[0] && gotB[0].info) equal(gotB[0].info.connInfo, info, "publication info: connInfo is the token's info claim");
    const offs = offsets(gotB);
    check(offs[0] >= 1 && consecutive(offs), `offsets consecutive from >= 1: ${offs}`);
    const gotA = await sa.rec.waitCount('publication', PAYLOADS.length);
    equal(datas(gotA), PAYLOADS, 'A (the publisher, subscribed) received its own publications');
    await sleep(300);
    equal(sb.rec.all('publication').length, PAYLOADS.length, 'no extra publication on B');
    await B.c.publish(CHANNEL, { from: 'bob' });
    const p = await sa.rec.waitFor('publication', (x) => isDeepStrictEqual(x.data, { from: 'bob' }));
    check(p.info && p.info.user === 'bob', "Centrifuge.publish: received with bob's info");
  },

  // Presence and presence stats from the SDK; join/leave seen by a subscriber.
  async presence() {
    const A = await connected('A', 'alice', { token: token('alice', 3600, { info: { role: 'admin' } }) });
    const B = await connected('B', 'bob');
    const C = await connected('C', 'alice'); // a second connection of alice
    const sa = await subscribed(A, CHANNEL, { joinLeave: true });
    const m = sa.rec.mark();
    const sb = await subscribed(B, CHANNEL, { joinLeave: true });
    await subscribed(C, CHANNEL, { joinLeave: true });
    let j = await sa.rec.waitFor('join', (x) => x.info.client === B.id, 5000, m);
    equal(j.info.user, 'bob', "A sees B's join (user bob)");
    j = await sa.rec.waitFor('join', (x) => x.info.client === C.id, 5000, m);
    equal(j.info.user, 'alice', "A sees C's join (user alice)");
    const pres = await sa.s.presence();
    equal(Object.keys(pres.clients).sort(), [A.id, B.id, C.id].sort(), 'presence: the 3 client ids');
    const users = Object.fromEntries(Object.entries(pres.clients).map(([k, v]) => [k, v.user]));
    equal(users, { [A.id]: 'alice', [B.id]: 'bob', [C.id]: 'alice' }, 'presence: users');
    if (pres.clients[A.id]) {
      equal(pres.clients[A.id].connInfo, { role: 'admin' }, "presence: A's connInfo (token info claim)");
      equal(pres.clients[A.id].client, A.id, 'presence: ClientInfo.client');
    }
    let st = await sa.s.presenceStats();
    equal(st, { numClients: 3, numUsers: 2 }, 'presenceStats: 3 clients, 2 users');
    const m2 = sa.rec.mark();
    sb.s.unsubscribe();
    let lv = await sa.rec.waitFor('leave', (x) => x.info.client === B.id, 5000, m2);
    equal(lv.info.user, 'bob', "A sees B's leave after B unsubscribes");
    C.c.disconnect();
    lv = await sa.rec.waitFor('leave', (x) => x.info.client === C.id, 5000, m2);
    equal(lv.info.user, 'alice', "A sees C's leave after C disconnects");
    st = await sa.s.presenceStats();
    equal(st, { numClients: 1, numUsers: 1 }, 'presenceStats after the leaves: 1 client, 1 user');
    const pres2 = await sa.s.presence();
    equal(Object.keys(pres2.clients), [A.id], 'presence after the leaves: only A');
  },

  // History from the SDK: limit, since, reverse, position only, wrong epoch.
  async history() {
    const A = await connected('A', 'alice');
    const sa = await subscribed(A);
    const items = [1, 2, 3, 4, 5].map((i) => ({ i, s: `message ${i} ✓` }));
    for (const it of items) await sa.s.publish(it);
    await sa.rec.waitCount('publication', 5);
    let h = await sa.s.history({ limit: 10 });
    equal(datas(h.publications), items, 'history({limit: 10}): the 5 publications in order');
    equal(offsets(h.publications), [1, 2, 3, 4, 5], 'history: offsets 1..5');
    equal(h.offset, 5, 'history: top offset 5');
    check(typeof h.epoch === 'string' && h.epoch !== '', `history: non-empty epoch (${short(h.epoch)})`);
    const epoch = h.epoch;
    check(h.publications.every((p) => p.info && p.info.user === 'alice'), "history keeps the publisher's info");
    h = await sa.s.history({ limit: 2 });
    equal(offsets(h.publications), [1, 2], 'history({limit: 2}): the oldest two');
    h = await sa.s.history({ limit: 2, reverse: true });
    equal(offsets(h.publications), [5, 4], 'history({limit: 2, reverse}): the newest two, newest first');
    h = await sa.s.history({ limit: 10, since: { offset: 2, epoch } });
    equal(offsets(h.publications), [3, 4, 5], 'history({since: 2}): offsets 3..5');
    h = await sa.s.history({ limit: 10, since: { offset: 4, epoch }, reverse: true });
    equal(offsets(h.publications), [3, 2, 1], 'history({since: 4, reverse}): offsets 3, 2, 1');
    h = await sa.s.history({});
    equal([h.publications.length, h.offset, h.epoch], [0, 5, epoch], 'history({}) : no publications, the position only');
    await expectError('history since a wrong epoch', 112, sa.s.history({ limit: 10, since: { offset: 1, epoch: 'not-the-epoch' } }));
  },

  // Recovery: the connection is cut, publications are made meanwhile through
  // the server API; after the SDK reconnects by itself, every one arrives once.
  async recovery() {
    const proxy = await new Proxy(ARGS.port).start();
    const A = await connected('A', 'alice', { port: proxy.port, maxReconnectDelay: 300 });
    const sa = await subscribed(A);
    must(sa.ctx.recoverable, 'subscription is recoverable');
    const sent = [];
    for (let i = 0; i < 3; i++) {
      sent.push({ n: i, phase: 'before' });
      await apiPublish(sent.at(-1));
    }
    await sa.rec.waitCount('publication', 3);
    const mc = A.rec.mark();
    const ms = sa.rec.mark();
    proxy.blocked = true;
    check(proxy.cut() === 1, 'one connection through the proxy, cut');
    await A.rec.waitFor('connecting', () => true, 5000, mc);
    for (let i = 3; i < 13; i++) {
      sent.push({ n: i, phase: 'missed', text: 'ünïcödé ✓' });
      await apiPublish(sent.at(-1));
    }
    must(A.c.state === 'connecting', 'A was still disconnected after the 10 publications');
    proxy.blocked = false;
    const ctx = await sa.rec.waitFor('subscribed', () => true, 8000, ms);
    check(ctx.wasRecovering === true, 'resubscribe: wasRecovering');
    check(ctx.recovered === true, 'resubscribe: recovered');
    check(ctx.streamPosition && sa.ctx.streamPosition && ctx.streamPosition.epoch === sa.ctx.streamPosition.epoch,
      'same epoch after recovery');
    for (let i = 13; i < 15; i++) {
      sent.push({ n: i, phase: 'after' });
      await apiPublish(sent.at(-1));
    }
    await sa.rec.waitCount('publication', sent.length);
    await sleep(300);
    const got = sa.rec.all('publication');
    equal(datas(got), sent, 'A received every publication exactly once, in order');
    check(consecutive(offsets(got)), `offsets consecutive: ${offsets(got)}`);
    proxy.close();
  },

  // More publications missed than the history keeps (--history-size 100): the
  // subscription comes back with recovered false (and no error).
  async 'recovery-gap'() {
    const proxy = await new Proxy(ARGS.port).start();
    const A = await connected('A', 'alice', { port: proxy.port, maxReconnectDelay: 300 });
    const sa = await subscribed(A);
    await apiPublish({ n: 0 });
    await sa.rec.waitCount('publication', 1);
    const ms = sa.rec.mark();
    proxy.blocked = true;
    proxy.cut();
    await A.rec.waitFor('connecting', () => true, 5000);
    for (let i = 1; i <= 120; i++) await apiPublish({ n: i });
    must(A.c.state === 'connecting', 'A was still disconnected after 120 publications');
    proxy.blocked = false;
    const ctx = await sa.rec.waitFor('subscribed', () => true, 8000, ms);
    check(ctx.wasRecovering === true, 'resubscribe: wasRecovering');
    check(ctx.recovered === false, 'resubscribe: recovered false (120 missed, 100 kept)');
    check(sa.s.state === 'subscribed', 'the subscription is subscribed all the same');
    await sleep(300);
    const got = sa.rec.all('publication', ms).map((p) => p.data.n);
    check(got.length <= 100 && new Set(got).size === got.length,
      `no duplicates, at most the 100 kept ones delivered (${got.length})`);
    await apiPublish({ n: 121 });
    await sa.rec.waitFor('publication', (p) => p.data.n === 121, 5000, ms);
    check(true, 'live publications flow after the failed recovery');
    proxy.close();
  },

  // Token refresh: first an expired token (the hub answers 109, the SDK gets a
  // new one), then 3-second tokens: the connection stays up across expiries.
  async refresh() {
    let calls = 0;
    const getToken = async () => {
      calls += 1;
      return token('alice', 3);
    };
    const A = newClient('A', { token: token('alice', -30), getToken });
    A.c.connect();
    await A.rec.waitFor('connected', () => true, 8000);
    check(A.rec.all('error').some((e) => e.type === 'connect' && e.error.code === 109),
      'connect with an expired token: the hub answered 109 (token expired)');
    equal(calls, 1, 'getToken called once for the new token');
    const sa = await subscribed(A);
    const m = A.rec.mark();
    await sleep(8000);
    equal(A.rec.names(m).filter((n) => ['connecting', 'disconnected', 'connected'].includes(n)), [],
      'no reconnect for 8 s with 3-second tokens');
    check(calls >= 3, `getToken called for refreshes (${calls - 1} refreshes in 8 s)`);
    check(!A.rec.all('error', m).length, 'no error event during the refreshes');
    check(A.c.state === 'connected', 'still connected');
    await apiPublish({ still: 'here' });
    await sa.rec.waitFor('publication', (p) => isDeepStrictEqual(p.data, { still: 'here' }));
    check(true, 'the subscription still receives publications');
  },

  // The token expires and there is no getToken. The SDK learns the expiry
  // from the connect reply (expires, ttl), tries to refresh at ttl, has no
  // getToken: error 'configuration', then disconnected 'unauthorized' (1).
  async 'expire-no-gettoken'() {
    const A = newClient('A', { token: token('alice', 2) });
    const t0 = Date.now();
    A.c.connect();
    await A.rec.waitFor('connected');
    const d = await A.rec.waitFor('disconnected', () => true, 10000);
    const dt = (Date.now() - t0) / 1000;
    equal([d.code, d.reason], [1, 'unauthorized'], 'disconnected: unauthorized (1)');
    check(A.rec.all('error').some((e) => e.type === 'configuration'),
      "error event 'configuration' (token expired but no getToken)");
    check(dt <= 3.5, `... at the token's expiry, driven by the connect reply's ttl (${dt.toFixed(1)} s after connect)`);
    check(!A.rec.all('connecting').some((c) => c.code === 3005),
      'the SDK stopped before the hub had to close the connection');
    const m = A.rec.mark();
    await sleep(500);
    check(!A.rec.all('connecting', m).length && A.c.state === 'disconnected', 'no reconnect');
  },

  // getToken hangs after the first token, so the SDK cannot refresh: the hub
  // must close the connection with 3005 (expired) once exp + grace (1 s, from
  // --client-expired-grace 1) is past, and refuse the stale token with 109.
  async 'expire-server'() {
    let calls = 0;
    const getToken = () => {
      calls += 1;
      return calls === 1 ? Promise.resolve(token('alice', 2)) : new Promise(() => {});
    };
    const A = newClient('A', { getToken });
    const t0 = Date.now();
    A.c.connect();
    await A.rec.waitFor('connected');
    const c = await A.rec.waitFor('connecting', (x) => x.code !== 0, 8000);
    const dt = (Date.now() - t0) / 1000;
    equal([c.code, c.reason], [3005, 'expired'], 'the hub closed the connection with 3005 expired');
    check(dt >= 1.0 && dt <= 5.0, `... about 1 s (the grace) after the token's exp (${dt.toFixed(1)} s after connect)`);
    const e = await A.rec.waitFor('error', (x) => x.type === 'connect', 5000);
    equal(e.error.code, 109, 'the reconnect with the expired token: error 109 token expired');
    check(calls >= 2, 'the SDK asked getToken for a new token');
  },

  // Invalid tokens: disconnected with 3500 (invalid token), no reconnect.
  async 'bad-token'() {
    const good = token('bob').split('.');
    const alice = token('alice').split('.');
    const cases = [
      ['wrong secret', hs256(claims('alice'), `not-${ARGS.secret}`)],
      ['alg none', unsigned(claims('alice'))],
      ['garbage', 'not.a.jwt'],
      ['payload swapped', [good[0], alice[1], good[2]].join('.')],
    ];
    for (const [label, tok] of cases) {
      const A = newClient(label, { token: tok });
      A.c.connect();
      let d;
      try {
        d = await A.rec.waitFor('disconnected');
      } catch (e) {
        check(false, `${label}: ${e.message}`);
        A.c.disconnect();
        continue;
      }
      check(!A.rec.all('connected').length, `${label}: never connected`);
      equal([d.code, d.reason], [3500, 'invalid token'], `${label}: disconnected 3500 invalid token`);
      const m = A.rec.mark();
      await sleep(500);
      check(!A.rec.all('connecting', m).length && A.c.state === 'disconnected', `${label}: no reconnect`);
    }
    // No token at all, and the hub has no --allow-anonymous: refused for good
    // (a code the SDK does not reconnect after: 3500..3999).
    const N = newClient('no token', {});
    N.c.connect();
    try {
      const d = await N.rec.waitFor('disconnected');
      check(!N.rec.all('connected').length && d.code >= 3500 && d.code < 4000,
        `no token without --allow-anonymous: refused without reconnect (${d.code} ${d.reason})`);
    } catch (e) {
      check(false, `no token without --allow-anonymous: ${e.message}`);
    }
    // Expired, no getToken: 109, then the SDK gives up as unauthorized.
    const E = newClient('expired', { token: token('alice', -30) });
    E.c.connect();
    const d = await E.rec.waitFor('disconnected');
    check(E.rec.all('error').some((e) => e.type === 'connect' && e.error.code === 109), 'expired token: error 109');
    equal(d.code, 1, 'expired token without getToken: disconnected unauthorized (1)');
  },

  // Forbidden channels and calls: 102 unknown channel, 103 permission denied.
  async forbidden() {
    const A = await connected('A', 'alice');
    const s = newSub(A, 'secret:x');
    s.s.subscribe();
    const u = await s.rec.waitFor('unsubscribed');
    equal(u.code, 102, 'subscribe to secret:x (unknown namespace): unsubscribed with 102');
    await expectError('publish to secret:x', 102, A.c.publish('secret:x', { x: 1 }));
    await expectError('presence of secret:x', 102, A.c.presence('secret:x'));
    await expectError('publish to news without being subscribed', 103, A.c.publish(CHANNEL, { x: 1 }));
    await expectError('presence of news without being subscribed', 103, A.c.presence(CHANNEL));
    await expectError('history of news without being subscribed', 103, A.c.history(CHANNEL, { limit: 10 }));
    check(A.c.state === 'connected', 'errors leave the connection up');
    await subscribed(A);
  },

  // Subscription tokens (hub without --allow-subscribe).
  async 'sub-token'() {
    const A = await connected('A', 'alice');
    const s0 = newSub(A, CHANNEL);
    s0.s.subscribe();
    const u = await s0.rec.waitFor('unsubscribed');
    equal(u.code, 103, 'subscribe without a token (no --allow-subscribe): unsubscribed with 103');
    let calls = 0;
    const s1 = await subscribed(A, 'vip', {
      getToken: async (ctx) => {
        calls += 1;
        equal(ctx.channel, 'vip', 'subscription getToken gets the channel');
        return chanToken('alice', 'vip');
      },
    });
    equal(calls, 1, 'subscribed with a channel token from getToken');
    await apiPublish({ vip: 1 }, 'vip');
    await s1.rec.waitFor('publication');
    check(true, 'publications arrive on the token-authorised channel');
    let calls2 = 0;
    const s2 = newSub(A, 'vip2', {
      getToken: async () => {
        calls2 += 1;
        return calls2 === 1 ? chanToken('alice', 'vip2', -30) : chanToken('alice', 'vip2');
      },
    });
    s2.s.subscribe();
    await s2.rec.waitFor('subscribed', () => true, 8000);
    check(s2.rec.all('error').some((e) => e.error.code === 109), 'expired channel token: error 109');
    equal(calls2, 2, 'after 109 the SDK got a new channel token and subscribed');
    // A channel token with a 3-second exp: the SDK refreshes it (sub_refresh)
    // from the subscribe reply's expires/ttl; the subscription stays.
    let calls3 = 0;
    const s3 = await subscribed(A, 'vip5', {
      getToken: async () => {
        calls3 += 1;
        return chanToken('alice', 'vip5', 3);
      },
    });
    const m3 = s3.rec.mark();
    await sleep(7000);
    equal(s3.rec.names(m3).filter((n) => n !== 'publication'), [],
      'a subscription with 3-second channel tokens stays subscribed for 7 s');
    check(calls3 >= 3, `getToken called for channel token refreshes (${calls3 - 1} in 7 s)`);
    check(A.c.state === 'connected' && s3.s.state === 'subscribed', 'still connected and subscribed');
    // A token for another channel, or for another user, must not work. Centrifugo
    // disconnects with 3500 (invalid token) here; error 103 also refuses it.
    for (const [label, tok, ch] of [
      ['token of another channel', chanToken('alice', 'vip'), 'vip3'],
      ['token of another user', chanToken('mallory', 'vip4'), 'vip4'],
    ]) {
      const B = await connected(label, 'alice');
      const sb = newSub(B, ch, { token: tok });
      sb.s.subscribe();
      await Promise.race([
        sb.rec.waitFor('unsubscribed', () => true, 5000).catch(() => {}),
        B.rec.waitFor('disconnected', () => true, 5000).catch(() => {}),
      ]);
      const un = sb.rec.all('unsubscribed')[0];
      const dis = B.rec.all('disconnected')[0];
      check(sb.s.state !== 'subscribed' && ((un && un.code === 103) || (dis && dis.code === 3500)),
        `${label}: refused (${un ? `unsubscribed ${un.code}` : dis ? `disconnected ${dis.code}` : 'no answer'})`);
    }
  },

  // Server-side subscriptions from the token's `channels` claim: the client is
  // subscribed when it connects (client-level events), and on reconnect the SDK
  // asks to recover them in its connect command (`subs`).
  async 'server-subs'() {
    const proxy = await new Proxy(ARGS.port).start();
    const A = await connected('A', 'alice', { port: proxy.port, maxReconnectDelay: 300,
      token: token('alice', 3600, { channels: [CHANNEL] }) });
    const first = await A.rec.waitFor('subscribed', (x) => x.channel === CHANNEL);
    check(first.recoverable === true, 'server-side subscription from the channels claim: recoverable');
    const sent = [{ n: 0 }, { n: 1 }];
    for (const d of sent) await apiPublish(d);
    await A.rec.waitCount('publication', 2);
    const m = A.rec.mark();
    proxy.blocked = true;
    proxy.cut();
    await A.rec.waitFor('connecting', () => true, 5000, m);
    for (let i = 2; i < 5; i++) {
      sent.push({ n: i });
      await apiPublish(sent.at(-1));
    }
    must(A.c.state === 'connecting', 'A was still disconnected after the publications');
    proxy.blocked = false;
    const ctx = await A.rec.waitFor('subscribed', (x) => x.channel === CHANNEL, 8000, m);
    check(ctx.wasRecovering === true && ctx.recovered === true, 'after reconnect: wasRecovering and recovered');
    await A.rec.waitCount('publication', sent.length);
    await sleep(300);
    const got = A.rec.all('publication');
    equal(got.map((p) => p.data), sent, 'every publication exactly once, in order (client-level events)');
    check(got.every((p) => p.channel === CHANNEL), 'each with its channel');
    proxy.close();
  },

  // Namespaces from --config (hub.toml written by scripts/hub.sh): chat:* is
  // open to subscribers with presence and history; the default namespace is
  // not open (no allow_subscribe), other namespaces do not exist.
  async namespaces() {
    const A = await connected('A', 'alice');
    const sc = await subscribed(A, 'chat:room');
    check(sc.ctx.recoverable === true, 'chat:room: recoverable (history in the namespace)');
    await sc.s.publish({ hello: 'chat ✓' });
    const p = await sc.rec.waitFor('publication');
    equal([p.data, p.offset], [{ hello: 'chat ✓' }, 1], 'chat:room: publish and receive, offset 1');
    const st = await sc.s.presenceStats();
    equal(st, { numClients: 1, numUsers: 1 }, 'chat:room: presence stats');
    const h = await sc.s.history({ limit: 10 });
    equal(datas(h.publications), [{ hello: 'chat ✓' }], 'chat:room: history');
    const s1 = newSub(A, CHANNEL);
    s1.s.subscribe();
    equal((await s1.rec.waitFor('unsubscribed')).code, 103, 'news (default namespace, not open): 103');
    const s2 = newSub(A, 'secret:x');
    s2.s.subscribe();
    equal((await s2.rec.waitFor('unsubscribed')).code, 102, 'secret:x (no such namespace): 102');
  },

  // --allow-anonymous: no token needed, the user is "".
  async anonymous() {
    const A = newClient('A', {});
    A.c.connect();
    await A.rec.waitFor('connected');
    const B = await connected('B', 'bob');
    const sa = await subscribed(A);
    await subscribed(B);
    const pres = await sa.s.presence();
    const users = Object.values(pres.clients).map((c) => c.user).sort();
    equal(users, ['', 'bob'], 'presence: the anonymous user is ""');
    await sa.s.publish({ anon: true });
    const p = await sa.rec.waitFor('publication');
    equal(p.info && p.info.user, '', 'publication info of the anonymous client: user ""');
  },

  // App-level pings (--client-ping-interval 2). The SDK expects each within the
  // interval + maxServerPingDelay (1.5 s here, 10 s by default) and answers it
  // (pong: true). A ping missed, a gap of two intervals, makes the SDK reconnect
  // with 'no ping' (2): with the defaults, a 50 s gap against 25 + 10 s.
  async ping() {
    const A = await connected('A', 'alice', { maxServerPingDelay: 1500 });
    const sa = await subscribed(A);
    const m = A.rec.mark();
    await sleep(7000);
    const events = A.rec.all('connecting', m);
    equal(events, [], 'no reconnect for 7 s (every ping within 2 + 1.5 s, pongs accepted)');
    await apiPublish({ ping: 'ok' });
    await sa.rec.waitFor('publication');
    check(true, 'the connection still works');
  },
};

function usage(code) {
  process.stderr.write(
    'usage: sdk_node.mjs SCENARIO --hub http://127.0.0.1:PORT --api-key KEY --secret SECRET\n' +
    '       sdk_node.mjs --list\n');
  process.exit(code);
}

async function main() {
  const argv = process.argv.slice(2);
  const opts = { hub: '', apiKey: '', secret: '' };
  let scenario = null;
  let list = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--list') list = true;
    else if (a === '--help' || a === '-h') usage(0);
    else if (a === '--hub') opts.hub = argv[++i];
    else if (a === '--api-key') opts.apiKey = argv[++i];
    else if (a === '--secret') opts.secret = argv[++i];
    else if (!a.startsWith('-') && scenario === null) scenario = a;
    else usage(2);
  }
  loadSdk();
  if (list) {
    for (const name of Object.keys(SCENARIOS)) console.log(name);
    const version = (name) => {
      // Read beside the resolved entry point: package.json is not in the exports map.
      let dir = path.dirname(require.resolve(name));
      while (!fs.existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
      return JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).version;
    };
    console.log(`centrifuge ${version('centrifuge')}, ws ${version('ws')}`);
    return 0;
  }
  if (!scenario || !opts.hub || !(scenario in SCENARIOS)) usage(2);
  ARGS = { ...opts, port: Number(new URL(opts.hub).port) };
  log(`scenario ${scenario} against ${ARGS.hub}`);
  return runScenario(async () => {
    await SCENARIOS[scenario]();
  }, () => {
    for (const c of CLIENTS) {
      try {
        c.disconnect();
      } catch (e) {
        // ignore
      }
    }
  });
}

exitWith(main);
