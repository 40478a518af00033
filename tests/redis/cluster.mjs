#!/usr/bin/env node
// Scenarios of several `wsx hub` nodes sharing one Redis (wsx hub --redis), with the
// official Centrifugo JavaScript SDK (`centrifuge` 5.8.0, the one pinned in tests/hub)
// as the clients and fetch() for the server HTTP API.
//
//   node cluster.mjs SCENARIO --nodes URL,URL[,URL] --api-key KEY [--pids PID,PID,...]
//        [--redis-port P] [--redis-host H] [--redis-dir DIR] [--link IFACE] [--presence-ttl S]
//   node cluster.mjs --list
//
// scripts/redis.sh starts redis-server and the nodes (every node with --history-size
// 1000 --history-ttl 300 --presence --join-leave --allow-anonymous --allow-subscribe
// --allow-publish --presence-ttl 6) and passes what a scenario needs to break things:
//   --pids        the wsx processes of the nodes, in the order of --nodes (kill-9)
//   --redis-dir   where the supervisor of redis-server keeps redis.pid; a file
//                 redis.restart holding N makes it start redis-server again N s after
//                 it exits (restart, crash)
//   --redis-port  for redis-cli (link-cut) and to see Redis go and come back
//   --link        the host side of the veth carrying node 1's Redis traffic (partition)
//
// Every check logs a line to stderr ("ok: ..." or "FAIL: ..."), other lines are what
// happened, with times; a few "info: ..." lines go to stdout as well (scripts/redis.sh
// shows them under the case's PASS/FAIL line). Exit status 0 when every check passed,
// 1 when one failed, 2 on a usage error.

import { createRequire } from 'node:module';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';

// CommonJS resolution, so that NODE_PATH (tests/hub's cached node_modules, set by
// scripts/redis.sh) applies: ESM imports ignore it.
const require = createRequire(import.meta.url);

const START = Date.now();
const failures = [];
let ARGS = {};

function log(msg) {
  process.stderr.write(`[${((Date.now() - START) / 1000).toFixed(3).padStart(7)}] ${msg}\n`);
}

function info(msg) {
  log(`info: ${msg}`);
  process.stdout.write(`${msg}\n`);
}

class Fatal extends Error {}

function short(v, limit = 300) {
  let s;
  try {
    s = typeof v === 'string' ? v : JSON.stringify(v);
  } catch (e) {
    s = String(v);
  }
  if (s === undefined) s = String(v);
  return s.length > limit ? `${s.slice(0, limit)}... (${s.length} chars)` : s;
}

function check(cond, what) {
  if (cond) {
    log(`ok: ${what}`);
    return true;
  }
  failures.push(what);
  log(`FAIL: ${what}`);
  return false;
}

function equal(got, want, what) {
  const g = JSON.parse(JSON.stringify(got === undefined ? null : got));
  const w = JSON.parse(JSON.stringify(want === undefined ? null : want));
  if (isDeepStrictEqual(g, w)) {
    log(`ok: ${what}`);
    return true;
  }
  return check(false, `${what}: got ${short(got)}, want ${short(want)}`);
}

function must(cond, what) {
  if (!check(cond, what)) throw new Fatal(what);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const secs = (ms) => `${(ms / 1000).toFixed(1)} s`;

// Polls `probe` (sync or async) every `every` ms until it returns something truthy
// (returned), or `ms` have passed (then undefined). Probe errors count as "not yet".
async function poll(probe, ms, every = 100) {
  const end = Date.now() + ms;
  for (;;) {
    let v;
    try {
      v = await probe();
    } catch (e) {
      v = undefined;
    }
    if (v) return v;
    if (Date.now() >= end) return undefined;
    await sleep(every);
  }
}

// A short list of numbers for messages: "1-5, 9, 12-14".
function ranges(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const out = [];
  for (let i = 0; i < s.length;) {
    let j = i;
    while (j + 1 < s.length && s[j + 1] === s[j] + 1) j++;
    out.push(i === j ? `${s[i]}` : `${s[i]}-${s[j]}`);
    i = j + 1;
  }
  const text = out.join(', ');
  return text.length > 200 ? `${text.slice(0, 200)}...` : text || 'none';
}

// ---------------------------------------------------------------- recorder
// Keeps every event of an SDK object; waits look at the list from a mark on.
class Recorder {
  constructor(label, quiet = []) {
    this.label = label;
    this.events = [];
    this.waiters = new Set();
    this.quiet = new Set(quiet); // events kept but not logged one by one
  }

  watch(emitter, names) {
    for (const name of names) emitter.on(name, (ctx) => this.push(name, ctx));
    return this;
  }

  push(name, ctx) {
    this.events.push({ name, ctx, t: Date.now() });
    if (!this.quiet.has(name)) log(`${this.label} ${name} ${short(ctx, 200)}`);
    for (const w of this.waiters) w();
  }

  mark() {
    return this.events.length;
  }

  all(name, since = 0) {
    return this.events.slice(since).filter((e) => e.name === name).map((e) => e.ctx);
  }

  waitFor(name, pred = () => true, ms = 5000, since = 0) {
    return new Promise((resolve, reject) => {
      const probe = () => this.all(name, since).find(pred);
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
        reject(new Fatal(`${this.label}: no '${name}' event within ${ms} ms`));
      }, ms);
      this.waiters.add(waiter);
    });
  }
}

// ---------------------------------------------------------------- SDK glue
let Centrifuge;
let WebSocket;
function loadSdk() {
  ({ Centrifuge } = require('centrifuge'));
  // Node 20 has no global WebSocket: the SDK is given `ws`, as in tests/hub.
  WebSocket = require('ws');
}

const CLIENT_EVENTS = ['connecting', 'connected', 'disconnected', 'error'];
const SUB_EVENTS = ['subscribing', 'subscribed', 'unsubscribed', 'publication', 'join', 'leave', 'error'];
const CLIENTS = [];
const CHANNEL = 'c';

const wsUrl = (base) => `${base.replace(/^http:/, 'ws:').replace(/\/$/, '')}/connection/websocket`;

// A connected anonymous client (the nodes run with --allow-anonymous). Short reconnect
// delays, so that a reconnect after a failure is quick.
async function connected(label, base) {
  const c = new Centrifuge(wsUrl(base), {
    websocket: WebSocket,
    minReconnectDelay: 100,
    maxReconnectDelay: 1000,
    timeout: 5000,
    debug: process.env.HUB_SDK_DEBUG === '1',
  });
  const rec = new Recorder(label).watch(c, CLIENT_EVENTS);
  CLIENTS.push(c);
  c.connect();
  const ctx = await rec.waitFor('connected', () => true, 8000);
  must(c.state === 'connected' && ctx.client, `${label} connected to ${base}`);
  return { c, rec, label, id: ctx.client, mark: rec.mark() };
}

async function subscribed(cl, channel = CHANNEL, opts = {}) {
  const s = cl.c.newSubscription(channel, opts);
  const rec = new Recorder(`${cl.label}/${channel}`, ['publication']).watch(s, SUB_EVENTS);
  s.subscribe();
  const ctx = await rec.waitFor('subscribed', () => true, 8000);
  must(s.state === 'subscribed', `${cl.label} subscribed to '${channel}'`);
  cl.sub = { s, rec, ctx, mark: rec.mark() };
  return cl.sub;
}

// Reconnects of a client and resubscribes of its subscription since it was set up.
function bumps(cl) {
  return {
    reconnects: cl.rec.all('connecting', cl.mark).length,
    resubscribes: cl.sub ? cl.sub.rec.all('subscribing', cl.sub.mark).length : 0,
  };
}

// ---------------------------------------------------------------- server API
async function api(base, method, params, ms = 8000) {
  const r = await fetch(`${base.replace(/\/$/, '')}/api/${method}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-API-Key': ARGS.apiKey },
    body: JSON.stringify(params),
    signal: AbortSignal.timeout(ms),
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

// The result of /api/<method>, or a Fatal saying what came instead.
async function apiResult(base, method, params) {
  const r = await api(base, method, params);
  if (r.status !== 200 || !r.body || !r.body.result || r.body.error) {
    throw new Fatal(`${base} /api/${method} ${short(params, 100)}: ${r.status} ${short(r.body, 200)}`);
  }
  return r.body.result;
}

async function presenceIds(base, channel = CHANNEL) {
  const res = await apiResult(base, 'presence', { channel });
  return Object.keys(res.presence || {}).sort();
}

async function history(base, channel = CHANNEL) {
  return apiResult(base, 'history', { channel, limit: 1000 });
}

async function metrics(base) {
  const r = await fetch(`${base.replace(/\/$/, '')}/metrics`, { signal: AbortSignal.timeout(3000) });
  const m = {};
  for (const line of (await r.text()).split('\n')) {
    const hit = /^(wsx_hub_redis_[a-z_]+)\s+([0-9.eE+-]+)$/.exec(line.trim());
    if (hit) m[hit[1]] = Number(hit[2]);
  }
  return m;
}

const mshort = (m) => ['link_up', 'link_reconnects_total', 'caught_up_total', 'lost_total', 'errors_total']
  .map((k) => `${k}=${m[`wsx_hub_redis_${k}`]}`).join(' ');

// A publisher through the server API: publication n carries { seq: n, ... }. Each one
// is awaited; an answer with a result is an acknowledgement (its offset and epoch are
// kept), anything else (HTTP error, error result, no answer) makes it unacknowledged:
// it may or may not have been stored, so it must neither be expected nor be counted
// as an extra.
class Publisher {
  constructor(label, channel = CHANNEL) {
    this.label = label;
    this.channel = channel;
    this.acked = [];
    this.failed = [];
    this.seq = 0;
    this.stopped = false;
  }

  async publish(base) {
    const seq = ++this.seq;
    const data = { seq, text: `message ${seq} ✓`, node: base };
    const t = Date.now();
    try {
      const r = await api(base, 'publish', { channel: this.channel, data });
      if (r.status === 200 && r.body && r.body.result && !r.body.error && Number.isInteger(r.body.result.offset)) {
        this.acked.push({ seq, data, offset: r.body.result.offset, epoch: r.body.result.epoch });
        return true;
      }
      this.fail(seq, data, `${r.status} ${short(r.body, 150)}`, t);
    } catch (e) {
      this.fail(seq, data, `${e && e.name}: ${e && e.message}`, t);
    }
    return false;
  }

  fail(seq, data, why, t) {
    this.failed.push({ seq, data, why });
    if (this.failed.length <= 5 || this.failed.length % 20 === 0) {
      log(`${this.label}: publish ${seq} not acknowledged after ${Date.now() - t} ms: ${why}` +
        ` (${this.failed.length} so far)`);
    }
  }

  // Publishes through `pick(i)` until stop() or `count` publications, `pace` ms apart.
  async run({ pick, count = Infinity, pace = 0, onEach = null }) {
    for (let i = 0; i < count && !this.stopped; i++) {
      await this.publish(pick(i));
      if (onEach) await onEach(i);
      if (pace) await sleep(pace);
    }
    log(`${this.label}: ${this.acked.length} acknowledged, ${this.failed.length} not`);
  }

  stop() {
    this.stopped = true;
  }

  get uncertain() {
    return new Set(this.failed.map((f) => f.seq));
  }
}

const pubs = (cl) => cl.sub.rec.all('publication', 0);
const seqOf = (p) => (p && p.data && typeof p.data === 'object' ? p.data.seq : undefined);

// Waits (at most ms) until the subscription of `cl` received every acknowledged
// publication; true when it did.
async function received(cl, pub, ms) {
  const t = Date.now();
  const ok = await poll(() => {
    const have = new Set(pubs(cl).map(seqOf));
    return pub.acked.every((a) => have.has(a.seq));
  }, ms, 50);
  log(`${cl.label}: ${ok ? 'has' : 'does NOT have'} every acknowledged publication (waited ${Date.now() - t} ms)`);
  return !!ok;
}

// What a subscriber got against what was acknowledged: every acknowledged publication,
// once, with its offset and data, in ascending offset order, and nothing else except
// publications whose publish was not acknowledged (`uncertain` seqs).
function checkDelivery(label, got, acked, uncertain = new Set()) {
  const offs = got.map((p) => Number(p.offset));
  const seqs = got.map(seqOf);
  const count = new Map();
  for (const s of seqs) count.set(s, (count.get(s) || 0) + 1);
  const dups = [...count].filter(([, n]) => n > 1).map(([s]) => s);
  const bySeq = new Map(got.map((p) => [seqOf(p), p]));
  const missing = acked.filter((a) => !bySeq.has(a.seq)).map((a) => a.seq);
  const wrong = acked.filter((a) => {
    const p = bySeq.get(a.seq);
    return p && (Number(p.offset) !== a.offset || !isDeepStrictEqual(p.data, a.data));
  }).map((a) => a.seq);
  const ackedSeqs = new Set(acked.map((a) => a.seq));
  const extra = seqs.filter((s) => !ackedSeqs.has(s) && !uncertain.has(s));
  const unordered = offs.filter((o, i) => i > 0 && !(o > offs[i - 1]));
  const late = got.filter((p) => uncertain.has(seqOf(p))).map(seqOf);
  check(missing.length === 0,
    `${label}: received every acknowledged publication (${acked.length}; missing seq ${ranges(missing)})`);
  check(dups.length === 0, `${label}: no duplicates (duplicated seq ${ranges(dups)})`);
  check(unordered.length === 0,
    `${label}: in ascending offset order (${got.length} received${unordered.length ? `; out of order at offsets ${ranges(unordered)}` : ''})`);
  check(wrong.length === 0, `${label}: offsets and data as acknowledged (differing seq ${ranges(wrong)})`);
  check(extra.length === 0, `${label}: nothing that was never published (unknown seq ${ranges(extra)})`);
  if (late.length) log(`${label}: also received ${late.length} unacknowledged publication(s): seq ${ranges(late)}`);
}

// History through the API of `base` holds every acknowledged publication, in order.
async function checkHistory(base, label, acked) {
  const h = await history(base);
  const byOffset = new Map((h.publications || []).map((p) => [Number(p.offset), p]));
  const missing = acked.filter((a) => !byOffset.has(a.offset)).map((a) => a.seq);
  const wrong = acked.filter((a) => byOffset.has(a.offset) && !isDeepStrictEqual(byOffset.get(a.offset).data, a.data))
    .map((a) => a.seq);
  const offs = (h.publications || []).map((p) => Number(p.offset));
  check(missing.length === 0 && wrong.length === 0,
    `${label}: /api/history has every acknowledged publication with its data (${acked.length} acked,` +
    ` ${offs.length} in history; missing seq ${ranges(missing)}; differing seq ${ranges(wrong)})`);
  check(offs.every((o, i) => i === 0 || o > offs[i - 1]), `${label}: history in ascending offset order`);
  return h;
}

async function checkLink(base, label, { reconnects = 1 } = {}) {
  const m = await poll(async () => {
    const x = await metrics(base);
    return x.wsx_hub_redis_link_up === 1 ? x : undefined;
  }, 10000, 200) || await metrics(base).catch(() => ({}));
  info(`${label} metrics: ${mshort(m)}`);
  check(m.wsx_hub_redis_link_up === 1, `${label}: wsx_hub_redis_link_up 1 (${m.wsx_hub_redis_link_up})`);
  check(m.wsx_hub_redis_link_reconnects_total >= reconnects,
    `${label}: wsx_hub_redis_link_reconnects_total >= ${reconnects} (${m.wsx_hub_redis_link_reconnects_total})`);
  return m;
}

// ------------------------------------------------------------ outside world
function run(cmd, args, ms = 5000) {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: ms }, (err, stdout, stderr) => {
      resolve({ ok: !err, code: err ? err.code : 0, out: String(stdout).trim(), err: String(stderr).trim() });
    });
  });
}

function tcpOpen(port, host = '127.0.0.1', ms = 500) {
  return new Promise((resolve) => {
    const s = net.connect(port, host);
    const done = (v) => {
      s.destroy();
      resolve(v);
    };
    s.setTimeout(ms, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

const redisCli = (...args) => run('redis-cli', ['-h', ARGS.redisHost, '-p', String(ARGS.redisPort), ...args]);

// Stops redis-server with `signal`; the supervisor of scripts/redis.sh starts it again
// on the same port and dir `pauseMs` after it exited. Resolves once it answers PING.
async function restartRedis(signal, pauseMs) {
  const pidFile = path.join(ARGS.redisDir, 'redis.pid');
  const pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
  must(pid > 0, `redis-server pid from ${pidFile}: ${pid}`);
  fs.writeFileSync(path.join(ARGS.redisDir, 'redis.restart'), `${pauseMs / 1000}\n`);
  const t0 = Date.now();
  process.kill(pid, signal);
  log(`redis-server (pid ${pid}) sent ${signal}; back in ${pauseMs} ms`);
  must(await poll(async () => !(await tcpOpen(ARGS.redisPort, ARGS.redisHost)), 5000, 20),
    `redis-server stopped after ${signal}`);
  log(`redis-server down after ${Date.now() - t0} ms`);
  must(await poll(async () => (await redisCli('PING')).out === 'PONG', 15000, 100),
    'redis-server answers PING again after its restart');
  log(`redis-server back after ${Date.now() - t0} ms (new pid ${fs.readFileSync(pidFile, 'utf8').trim()})`);
}

// A TCP load balancer: each incoming connection goes to the first backend that
// accepts it, the next one being tried on ECONNREFUSED; bytes are piped both ways.
class Balancer {
  constructor(backends) {
    this.backends = backends; // [{ name, host, port }]
    this.chosen = []; // backend name of each connection, in order
    this.sockets = new Set();
  }

  start() {
    this.server = net.createServer((down) => {
      down.pause();
      this.sockets.add(down);
      down.on('error', () => {});
      down.on('close', () => this.sockets.delete(down));
      this.connect(down, 0);
    });
    return new Promise((resolve) => {
      this.server.listen(0, '127.0.0.1', () => {
        this.port = this.server.address().port;
        resolve(this);
      });
    });
  }

  connect(down, i) {
    if (down.destroyed) return;
    if (i >= this.backends.length) {
      log('balancer: no backend accepts; connection dropped');
      down.destroy();
      return;
    }
    const b = this.backends[i];
    const up = net.connect(b.port, b.host);
    let open = false;
    up.once('connect', () => {
      open = true;
      this.chosen.push(b.name);
      log(`balancer: connection ${this.chosen.length} to ${b.name}`);
      this.sockets.add(up);
      const end = () => {
        down.destroy();
        up.destroy();
      };
      down.on('close', end);
      up.on('close', end);
      down.pipe(up);
      up.pipe(down);
      down.resume();
    });
    up.on('error', (e) => {
      if (open) return;
      if (e.code === 'ECONNREFUSED') {
        log(`balancer: ${b.name} refused; trying the next backend`);
        this.connect(down, i + 1);
      } else {
        log(`balancer: ${b.name}: ${e.code || e.message}; connection dropped`);
        down.destroy();
      }
    });
  }

  close() {
    for (const s of this.sockets) s.destroy();
    this.server.close();
  }
}

// --------------------------------------------------------------- scenarios
const SCENARIOS = {
  // Three nodes on one Redis act as one hub: publications through any node's API reach
  // the subscribers of every node, in order; presence, join and history are shared.
  async three() {
    const N = ARGS.nodes;
    must(N.length === 3, 'three nodes given');
    const cls = [];
    for (let i = 0; i < 3; i++) {
      const cl = await connected(`client${i + 1}@node${i + 1}`, N[i]);
      const sub = await subscribed(cl, CHANNEL, { joinLeave: true });
      check(sub.ctx.recoverable === true && sub.ctx.positioned === true,
        `${cl.label}: subscription recoverable and positioned (history on)`);
      cls.push(cl);
    }
    const epochs = new Set(cls.map((cl) => cl.sub.ctx.streamPosition && cl.sub.ctx.streamPosition.epoch));
    check(epochs.size === 1 && !![...epochs][0],
      `the three nodes give the same stream epoch (${short([...epochs])})`);

    const pub = new Publisher('publisher');
    await pub.run({ pick: (i) => N[i % 3], count: 30 });
    must(pub.acked.length === 30, `30 publications acknowledged, rotating over the 3 nodes' APIs (${pub.failed.length} not)`);
    check(pub.acked.every((a, i) => a.offset === pub.acked[0].offset + i) && pub.acked[0].offset === 1,
      `acknowledged offsets 1..30, one sequence across nodes (${ranges(pub.acked.map((a) => a.offset))})`);
    check(new Set(pub.acked.map((a) => a.epoch)).size === 1, 'one epoch in every acknowledgement');
    await Promise.all(cls.map((cl) => received(cl, pub, 5000)));
    await sleep(300); // late duplicates would show up by now
    for (const cl of cls) checkDelivery(cl.label, pubs(cl), pub.acked);

    const want = cls.map((cl) => cl.id).sort();
    for (let i = 0; i < 3; i++) {
      const ids = await poll(async () => {
        const x = await presenceIds(N[i]);
        return isDeepStrictEqual(x, want) ? x : undefined;
      }, 3000) || await presenceIds(N[i]);
      equal(ids, want, `/api/presence on node${i + 1}: the 3 clients of the 3 nodes`);
    }

    const marks = cls.map((cl) => cl.sub.rec.mark());
    const D = await connected('client4@node2', N[1]);
    await subscribed(D, CHANNEL, { joinLeave: true });
    for (const i of [0, 2]) {
      const cl = cls[i];
      const j = await cl.sub.rec.waitFor('join', (x) => x.info && x.info.client === D.id, 5000, marks[i])
        .catch(() => undefined);
      check(j !== undefined, `${cl.label} gets the join of client4 (on node2)`);
    }
    const ids4 = await poll(async () => {
      const x = await presenceIds(N[0]);
      return x.length === 4 ? x : undefined;
    }, 5000) || await presenceIds(N[0]);
    equal(ids4, [...want, D.id].sort(), '/api/presence on node1 after the join: 4 clients');

    const h = await checkHistory(N[2], 'node3', pub.acked);
    equal((h.publications || []).length, 30, 'node3 /api/history: 30 publications');
    equal(h.offset, 30, 'node3 /api/history: top offset 30');
    for (const cl of cls) equal(bumps(cl), { reconnects: 0, resubscribes: 0 }, `${cl.label}: never reconnected`);
  },

  // Node A dies (SIGKILL) under a client that came through a load balancer. The client
  // reconnects through it to node B and recovers: every acknowledged publication
  // (published continuously through node C) once, in order. A's client leaves
  // presence once its entries expire (--presence-ttl).
  async 'kill-9'() {
    const [A, B, C] = ARGS.nodes;
    must(ARGS.pids.length >= 1 && ARGS.pids[0] > 0, "node A's pid given (--pids)");
    const port = (u) => Number(new URL(u).port);
    const host = (u) => new URL(u).hostname;
    const lb = await new Balancer([
      { name: 'A', host: host(A), port: port(A) },
      { name: 'B', host: host(B), port: port(B) },
    ]).start();
    const X = await connected('X@lb', `http://127.0.0.1:${lb.port}`);
    equal(lb.chosen, ['A'], 'the balancer sent X to node A');
    const sx = await subscribed(X);
    check(sx.ctx.recoverable === true && sx.ctx.positioned === true, 'X: subscription recoverable and positioned');
    const Y = await connected('Y@nodeB', B);
    await subscribed(Y);
    const Z = await connected('Z@nodeC', C);
    await subscribed(Z);
    const oldX = X.id;
    const ms = sx.rec.mark();
    const mc = X.rec.mark();

    const pub = new Publisher('publisher@C');
    let killedAt = 0;
    const t0 = Date.now();
    await pub.run({
      pick: () => C,
      count: 300,
      pace: 8,
      onEach: async () => {
        if (!killedAt && pub.acked.length === 100) {
          process.kill(ARGS.pids[0], 'SIGKILL');
          killedAt = Date.now();
          log(`node A (pid ${ARGS.pids[0]}) killed with SIGKILL after ${pub.acked.length} acknowledged publications`);
        }
      },
    });
    must(killedAt > 0, 'node A was killed during the publishing');
    info(`publisher: ${pub.acked.length} acknowledged in ${secs(Date.now() - t0)} through node C, ${pub.failed.length} not;` +
      ` node A killed after ${secs(killedAt - t0)}`);
    check(pub.failed.length === 0, `every publication through node C acknowledged (${pub.failed.length} not)`);

    const re = await X.rec.waitFor('connected', () => true, 10000, mc).catch(() => undefined);
    must(re !== undefined, 'X reconnected after node A died');
    check(lb.chosen.length >= 2 && lb.chosen.slice(1).every((n) => n === 'B'),
      `X's reconnect went through the balancer to node B (${lb.chosen})`);
    const ctx = await sx.rec.waitFor('subscribed', () => true, 10000, ms).catch(() => undefined);
    must(ctx !== undefined, 'X resubscribed after the reconnect');
    check(ctx.wasRecovering === true && ctx.recovered === true,
      `X's resubscribe recovered (wasRecovering ${ctx.wasRecovering}, recovered ${ctx.recovered})`);
    check(ctx.streamPosition && sx.ctx.streamPosition && ctx.streamPosition.epoch === sx.ctx.streamPosition.epoch,
      'the same epoch on node B as on node A');
    await Promise.all([X, Y, Z].map((cl) => received(cl, pub, 10000)));
    await sleep(300);
    for (const cl of [X, Y, Z]) checkDelivery(cl.label, pubs(cl), pub.acked);
    equal(datas(pubs(X)), datas(pub.acked), 'X: received exactly the acknowledged publications, in order');
    await checkHistory(B, 'node B', pub.acked);

    // A's client leaves presence: only X's new connection, Y and Z remain.
    const newX = re.client;
    check(newX && newX !== oldX, `X has a new client id on node B (${oldX} -> ${newX})`);
    const want = [newX, Y.id, Z.id].sort();
    const bound = ARGS.presenceTtl * 1000 + 9000;
    let seen;
    const gone = await poll(async () => {
      seen = await presenceIds(C);
      return isDeepStrictEqual(seen, want);
    }, Math.max(0, killedAt + bound - Date.now()), 250);
    const after = Date.now() - killedAt;
    info(`presence: node A's client left ${gone ? `${secs(after)} after the kill` : `NOT within ${secs(after)}`}` +
      ` (--presence-ttl ${ARGS.presenceTtl})`);
    check(gone, `/api/presence on node C: only the live clients within ${secs(bound)} of the kill` +
      ` (want ${short(want)}, last seen ${short(seen)})`);
    const onB = await presenceIds(B);
    equal(onB, want, '/api/presence on node B: the same');
    for (const cl of [Y, Z]) equal(bumps(cl), { reconnects: 0, resubscribes: 0 }, `${cl.label}: never reconnected`);
    lb.close();
  },

  // redis-server stops (SIGTERM) and starts again 1.5 s later; every acknowledged
  // publication survives and reaches both nodes' subscribers once, in order.
  async restart() {
    await redisOutage('SIGTERM');
  },

  // The same with SIGKILL: appendfsync always means what was acknowledged is on disk.
  async crash() {
    await redisOutage('SIGKILL');
  },

  // Only the nodes' pub/sub connections are killed (CLIENT KILL TYPE pubsub), twice,
  // while node 2's API publishes (four publishers at once for 2 s): node 1's subscribers get everything, in order,
  // without being disconnected; the link reconnects.
  async 'link-cut'() {
    const [N1, N2] = ARGS.nodes;
    const a = await connected('a@node1', N1);
    await subscribed(a);
    const b = await connected('b@node1', N1);
    await subscribed(b);
    const c = await connected('c@node2', N2);
    await subscribed(c);
    const before = await metrics(N1);
    const pub = new Publisher('publisher@node2');
    // Four publishers at once, so that publications are in flight when the links are
    // killed, on timers of their own.
    const cuts = [];
    const cut = async () => {
      const r = await redisCli('CLIENT', 'KILL', 'TYPE', 'pubsub');
      cuts.push(r.out || r.err);
      log(`CLIENT KILL TYPE pubsub -> ${r.out || r.err} (${pub.acked.length} acknowledged so far)`);
    };
    const timers = [600, 1400].map((ms) => new Promise((resolve) => setTimeout(() => cut().then(resolve), ms)));
    const lanes = [1, 2, 3, 4].map(() => pub.run({ pick: () => N2, pace: 2 }));
    await Promise.all(timers);
    await sleep(600);
    pub.stop();
    await Promise.all(lanes);
    info(`publishers: ${pub.acked.length} acknowledged, ${pub.failed.length} not; the links killed at 0.6 s and 1.4 s`);
    check(cuts.length === 2 && cuts.every((n) => Number(n) >= 1),
      `CLIENT KILL TYPE pubsub killed the nodes' links, twice (killed: ${cuts.join(', ')})`);
    check(pub.failed.length === 0, `every publication through node 2 acknowledged (${pub.failed.length} not)`);
    await Promise.all([a, b, c].map((cl) => received(cl, pub, 10000)));
    await sleep(300);
    for (const cl of [a, b, c]) checkDelivery(cl.label, pubs(cl), pub.acked);
    for (const cl of [a, b, c]) {
      equal(bumps(cl), { reconnects: 0, resubscribes: 0 }, `${cl.label}: never disconnected nor resubscribed`);
    }
    const m1 = await checkLink(N1, 'node1', {
      reconnects: (before.wsx_hub_redis_link_reconnects_total || 0) + 1,
    });
    await checkLink(N2, 'node2');
    info(`node1 caught up ${m1.wsx_hub_redis_caught_up_total} publication(s) from history`);
  },

  // Node 1 (in its own network namespace) loses its route to Redis (the veth carrying
  // that traffic goes down; its clients' network stays up) while node 2's API
  // publishes; after the link comes back node 1's subscriber has everything, in order.
  // The cut lasts at least 3 s, and until 2 s after node 1 reports its link down (it
  // PINGs Redis every second and gives up on one unanswered for 5 s; 15 s at most), so
  // that it also fails to reconnect for a while: a cut shorter than its PING timeout is
  // bridged by TCP's retransmissions without the link ever being lost.
  async partition() {
    const [N1, N2] = ARGS.nodes;
    must(ARGS.link, 'the veth to cut given (--link)');
    const a = await connected('a@node1', N1);
    await subscribed(a);
    const c = await connected('c@node2', N2);
    await subscribed(c);
    const before = await metrics(N1);
    const pub = new Publisher('publisher@node2');
    await pub.run({ pick: () => N2, count: 5, pace: 20 });
    must(await received(a, pub, 5000), 'a@node1 receives before the cut');
    let r = await run('ip', ['link', 'set', ARGS.link, 'down']);
    must(r.ok, `ip link set ${ARGS.link} down (${r.err || 'ok'})`);
    const cutAt = Date.now();
    let noticed;
    try {
      await pub.run({ pick: () => N2, count: 20, pace: 40 });
      log(`a@node1 has ${pubs(a).length} publication(s) ${secs(Date.now() - cutAt)} into the cut`);
      noticed = await poll(async () => (await metrics(N1)).wsx_hub_redis_link_up === 0 && Date.now(), 15000, 100);
      // Then 2 s more, so that node 1 tries (and fails) to reconnect while cut off.
      await sleep(Math.max(0, cutAt + 3000 - Date.now(), noticed ? noticed + 2000 - Date.now() : 0));
      log(`a@node1 has ${pubs(a).length} publication(s) at the end of the cut`);
    } finally {
      r = await run('ip', ['link', 'set', ARGS.link, 'up']);
      check(r.ok, `ip link set ${ARGS.link} up after ${secs(Date.now() - cutAt)} (${r.err || 'ok'})`);
    }
    const upAt = Date.now();
    check(!!noticed, `node1 reports its Redis link down (wsx_hub_redis_link_up 0) during the cut` +
      ` (${noticed ? `${secs(noticed - cutAt)} after it` : 'not within 15 s'})`);
    check(pub.failed.length === 0, `every publication through node 2 acknowledged (${pub.failed.length} not)`);
    const ok = await received(a, pub, 20000);
    info(`cut for ${secs(upAt - cutAt)}; node1 saw its link down ${noticed ? `after ${secs(noticed - cutAt)}` : 'never'};` +
      ` a@node1 ${ok ? `had all ${pub.acked.length} publications ${secs(Date.now() - upAt)} after the link came back` : 'did NOT get everything'}`);
    await pub.run({ pick: () => N2, count: 5, pace: 20 });
    await Promise.all([a, c].map((cl) => received(cl, pub, 8000)));
    await sleep(300);
    for (const cl of [a, c]) checkDelivery(cl.label, pubs(cl), pub.acked);
    const ba = bumps(a);
    info(`client disconnects: a@node1 ${ba.reconnects} reconnect(s), ${ba.resubscribes} resubscribe(s)`);
    await checkLink(N1, 'node1', { reconnects: (before.wsx_hub_redis_link_reconnects_total || 0) + 1 });
    await checkLink(N2, 'node2', { reconnects: 0 });
  },
};

const datas = (xs) => xs.map((p) => p.data);

// The restart and crash scenarios: one subscriber on each of two nodes, a publisher
// through node 1's API all along, Redis stopped with `signal` about 1 s in and started
// again 1.5 s after it exited.
async function redisOutage(signal) {
  const [N1, N2] = ARGS.nodes;
  const a = await connected('a@node1', N1);
  const sa = await subscribed(a);
  const b = await connected('b@node2', N2);
  await subscribed(b);
  const before = await Promise.all([metrics(N1), metrics(N2)]);
  const pub = new Publisher('publisher@node1');
  const publishing = pub.run({ pick: () => N1, pace: 10 });
  await poll(() => pub.acked.length >= 50, 5000, 20);
  const firstEpoch = pub.acked.length ? pub.acked[0].epoch : undefined;
  const n0 = pub.acked.length;
  await restartRedis(signal, 1500);
  // Both links back (metrics), then a while of normal publishing.
  const back = await poll(async () => {
    const m = await Promise.all([metrics(N1), metrics(N2)]);
    return m.every((x) => x.wsx_hub_redis_link_up === 1) ? m : undefined;
  }, 15000, 100);
  log(`links ${back ? 'up again' : 'NOT up again within 15 s'}; ${pub.acked.length - n0} acknowledged since the stop`);
  const n1 = pub.acked.length;
  await poll(() => pub.acked.length >= n1 + 50, 6000, 20);
  pub.stop();
  await publishing;
  info(`publisher: ${pub.acked.length} acknowledged, ${pub.failed.length} not (Redis down)`);
  check(pub.acked.length >= n1 + 50, `publishing works again after the restart (${pub.acked.length - n1} acknowledged since)`);
  check(pub.acked.every((x, i) => i === 0 || x.offset > pub.acked[i - 1].offset),
    `acknowledged offsets ascend (${ranges(pub.acked.map((x) => x.offset))})`);
  check(pub.acked.every((x) => x.epoch === firstEpoch),
    `one epoch before and after the restart (${short([...new Set(pub.acked.map((x) => x.epoch))])})`);
  await Promise.all([a, b].map((cl) => received(cl, pub, 15000)));
  await sleep(500);
  const unsure = pub.uncertain;
  for (const cl of [a, b]) checkDelivery(cl.label, pubs(cl), pub.acked, unsure);
  await checkHistory(N1, 'node1', pub.acked);
  await checkHistory(N2, 'node2', pub.acked);
  const ba = bumps(a);
  const bb = bumps(b);
  info(`client disconnects: a@node1 ${ba.reconnects} reconnect(s), ${ba.resubscribes} resubscribe(s);` +
    ` b@node2 ${bb.reconnects} reconnect(s), ${bb.resubscribes} resubscribe(s)`);
  const subs = [...a.sub.rec.all('subscribed', a.sub.mark), ...b.sub.rec.all('subscribed', b.sub.mark)];
  check(subs.every((x) => x.recovered === true),
    `every resubscribe after the restart recovered (${subs.map((x) => `recovered ${x.recovered}`).join(', ') || 'none'})`);
  await checkLink(N1, 'node1', { reconnects: (before[0].wsx_hub_redis_link_reconnects_total || 0) + 1 });
  await checkLink(N2, 'node2', { reconnects: (before[1].wsx_hub_redis_link_reconnects_total || 0) + 1 });
  void sa;
}

// -------------------------------------------------------------------- main
function usage(code) {
  process.stderr.write(
    'usage: cluster.mjs SCENARIO --nodes URL,URL[,URL] --api-key KEY [--pids PID,...] [--redis-port P]\n' +
    '                   [--redis-host H] [--redis-dir DIR] [--link IFACE] [--presence-ttl S]\n' +
    '       cluster.mjs --list\n');
  process.exit(code);
}

async function main() {
  const argv = process.argv.slice(2);
  const opts = {
    nodes: [], apiKey: '', pids: [], redisPort: 0, redisHost: '127.0.0.1', redisDir: '', link: '', presenceTtl: 6,
  };
  let scenario = null;
  let list = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) usage(2);
      return argv[++i];
    };
    if (a === '--list') list = true;
    else if (a === '--help' || a === '-h') usage(0);
    else if (a === '--nodes') opts.nodes = val().split(',').filter(Boolean);
    else if (a === '--pids') opts.pids = val().split(',').filter(Boolean).map(Number);
    else if (a === '--api-key') opts.apiKey = val();
    else if (a === '--redis-port') opts.redisPort = Number(val());
    else if (a === '--redis-host') opts.redisHost = val();
    else if (a === '--redis-dir') opts.redisDir = val();
    else if (a === '--link') opts.link = val();
    else if (a === '--presence-ttl') opts.presenceTtl = Number(val());
    else if (!a.startsWith('-') && scenario === null) scenario = a;
    else usage(2);
  }
  loadSdk();
  if (list) {
    for (const name of Object.keys(SCENARIOS)) console.log(name);
    const version = (name) => {
      let dir = path.dirname(require.resolve(name));
      while (!fs.existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
      return JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).version;
    };
    console.log(`centrifuge ${version('centrifuge')}, ws ${version('ws')}`);
    return 0;
  }
  if (!scenario || !(scenario in SCENARIOS) || opts.nodes.length < 2) usage(2);
  ARGS = opts;
  log(`scenario ${scenario}: nodes ${opts.nodes.join(' ')}`);
  process.on('unhandledRejection', (e) => log(`unhandled rejection: ${short(e && e.stack ? e.stack : e)}`));
  try {
    await SCENARIOS[scenario]();
  } catch (e) {
    if (!(e instanceof Fatal)) {
      failures.push(`exception: ${e && e.message}`);
      log(`FAIL: exception: ${e && e.stack ? e.stack : short(e)}`);
    } else if (!failures.includes(e.message)) {
      failures.push(e.message);
      log(`FAIL: ${e.message}`);
    }
  } finally {
    for (const c of CLIENTS) {
      try {
        c.disconnect();
      } catch (e) {
        // ignore
      }
    }
  }
  if (failures.length) {
    log(`${failures.length} check(s) failed`);
    return 1;
  }
  log('all checks passed');
  return 0;
}

main().then((code) => process.exit(code), (e) => {
  log(`FAIL: ${e && e.stack}`);
  process.exit(1);
});
