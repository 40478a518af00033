#!/usr/bin/env node
// Scenarios of several `wsx hub` nodes sharing one Redis, or one Redis Cluster (wsx hub
// --redis), with the official Centrifugo JavaScript SDK (`centrifuge` 5.8.0, the one
// pinned in tests/hub) as the clients and fetch() for the server HTTP API.
//
//   node nodes.mjs SCENARIO --nodes URL,URL[,URL] --api-key KEY [--redis URL]
//        [--channels CH,CH,...] [--prefix PREFIX] [--pids PID,PID,...] [--redis-dir DIR[,DIR,...]]
//        [--link IFACE] [--presence-ttl S]
//   node nodes.mjs --list
//
// scripts/redis.sh starts redis-server (or a three-master Redis Cluster) and the nodes
// (every node with --history-size 1000 --history-ttl 300 --presence --join-leave
// --allow-anonymous --allow-subscribe --allow-publish --presence-ttl 6) and passes what a
// scenario needs to break things:
//   --redis       the nodes' --redis: redis://HOST:PORT (one server, the default
//                 redis://127.0.0.1:6379), or redis+cluster://HOST:PORT,HOST:PORT,...
//                 (a cluster: the scenarios then expect one link per master,
//                 wsx_hub_redis_link_up N, and find a channel's master with CLUSTER
//                 KEYSLOT and CLUSTER NODES)
//   --channels    the channels a scenario uses (default: c); with several, each client
//                 subscribes to all of them and each channel's publications are checked
//                 on their own (order, offsets, history, presence)
//   --prefix      the nodes' --redis-prefix (their keys are PREFIX.x.{CHANNEL})
//   --pids        the wsx processes of the nodes, in the order of --nodes (kill-9)
//   --redis-dir   where the supervisor of each redis-server keeps redis.pid, in the order
//                 of the servers in --redis; a file redis.restart holding N makes it start
//                 redis-server again N s after it exits (restart, crash, master-restart)
//   --link        the host side of the veth carrying node 1's Redis traffic (partition)
// (--redis-host H and --redis-port P are the older spelling of --redis redis://H:P.)
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
import { Fatal, check, equal, exitWith, failures, log, must, runScenario, short, sleep } from '../lib/checks.mjs';

// CommonJS resolution, so that NODE_PATH (tests/hub's cached node_modules, set by
// scripts/redis.sh) applies: ESM imports ignore it.
const require = createRequire(import.meta.url);

let ARGS = {};

function info(msg) {
  log(`info: ${msg}`);
  process.stdout.write(`${msg}\n`);
}

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
// The channels of the scenario (--channels), and how many pub/sub links each node has
// when all are up (1, or the cluster's masters): set in main().
let CHANNELS = ['c'];
let LINKS = 1;
const multi = () => CHANNELS.length > 1;
// A label for one channel of something: with one channel, the thing's label alone (the
// messages of the single-channel cases stay as they were).
const tag = (label, channel) => (multi() ? `${label}/${channel}` : label);

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
  return { c, rec, label, id: ctx.client, mark: rec.mark(), subs: new Map() };
}

// A subscription of `cl` to `channel`, kept in cl.subs.
async function subscribed(cl, channel, opts = {}) {
  const s = cl.c.newSubscription(channel, opts);
  const rec = new Recorder(`${cl.label}/${channel}`, ['publication']).watch(s, SUB_EVENTS);
  cl.subs.set(channel, { s, rec });
  s.subscribe();
  const ctx = await rec.waitFor('subscribed', () => true, 8000);
  must(s.state === 'subscribed', `${cl.label} subscribed to '${channel}'`);
  const sub = { s, rec, ctx, mark: rec.mark() };
  cl.subs.set(channel, sub);
  return sub;
}

// Subscriptions of `cl` to every channel of the scenario, all at once.
async function subscribedAll(cl, opts = {}) {
  await Promise.all(CHANNELS.map((ch) => subscribed(cl, ch, opts)));
  return cl;
}

// The channels whose subscription of `cl` fails `pred(sub)`.
const failing = (cl, pred) => CHANNELS.filter((ch) => !pred(cl.subs.get(ch)));
const listed = (chs) => (chs.length ? chs.join(' ') : 'none');

// Reconnects of a client and resubscribes of its subscriptions since they were set up.
function bumps(cl) {
  let resubscribes = 0;
  for (const sub of cl.subs.values()) resubscribes += sub.rec.all('subscribing', sub.mark).length;
  return { reconnects: cl.rec.all('connecting', cl.mark).length, resubscribes };
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

async function presenceIds(base, channel) {
  const res = await apiResult(base, 'presence', { channel });
  return Object.keys(res.presence || {}).sort();
}

// Polls /api/presence of every channel on `base` until each lists `want` (sorted ids),
// at most `ms`; what each channel listed last, by channel.
async function presenceEverywhere(base, want, ms) {
  const last = new Map();
  await poll(async () => {
    const seen = await Promise.all(CHANNELS.map((ch) => presenceIds(base, ch)));
    CHANNELS.forEach((ch, i) => last.set(ch, seen[i]));
    return seen.every((x) => isDeepStrictEqual(x, want));
  }, ms, 250);
  return last;
}

async function history(base, channel) {
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

// A publisher to one channel through the server API: publication n carries { seq: n,
// ... }. Each one is awaited; an answer with a result is an acknowledgement (its offset
// and epoch are kept), anything else (HTTP error, error result, no answer) makes it
// unacknowledged: it may or may not have been stored, so it must neither be expected nor
// be counted as an extra.
class Publisher {
  constructor(label, channel) {
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
        this.acked.push({ seq, data, offset: r.body.result.offset, epoch: r.body.result.epoch, at: Date.now() });
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
  async run({ pick, count = Infinity, pace = 0 }) {
    for (let i = 0; i < count && !this.stopped; i++) {
      await this.publish(pick(i));
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

// One Publisher per channel of the scenario (`list`, in the order of CHANNELS).
class Publishers {
  constructor(label, channels = CHANNELS) {
    this.label = label;
    this.list = channels.map((ch) => new Publisher(tag(label, ch), ch));
    this.turn = 0;
    this.stopped = false;
  }

  get acked() {
    return this.list.reduce((n, p) => n + p.acked.length, 0);
  }

  get failed() {
    return this.list.reduce((n, p) => n + p.failed.length, 0);
  }

  // Publications through `pick(i)`, to the channels in turn, one at a time, until stop()
  // or `count` publications, `pace` ms apart; `onEach(i)` after each. Several run() at
  // once share the turn.
  async run({ pick, count = Infinity, pace = 0, onEach = null }) {
    for (let i = 0; i < count && !this.stopped; i++) {
      const p = this.list[this.turn++ % this.list.length];
      await p.publish(pick(i));
      if (onEach) await onEach(i);
      if (pace) await sleep(pace);
    }
    log(`${this.label}: ${this.acked} acknowledged, ${this.failed} not`);
  }

  // Each channel's Publisher.run at once (so a channel whose Redis is away holds up no
  // other).
  async runEach(opts) {
    await Promise.all(this.list.map((p) => p.run(opts)));
  }

  stop() {
    this.stopped = true;
    for (const p of this.list) p.stop();
  }
}

const pubs = (cl, channel) => cl.subs.get(channel).rec.all('publication', 0);
const seqOf = (p) => (p && p.data && typeof p.data === 'object' ? p.data.seq : undefined);

// Waits (at most ms) until every subscription of `cl` received every acknowledged
// publication of its channel; true when they did.
async function received(cl, P, ms) {
  const t = Date.now();
  const missing = () => P.list.filter((p) => {
    const have = new Set(pubs(cl, p.channel).map(seqOf));
    return !p.acked.every((a) => have.has(a.seq));
  }).map((p) => p.channel);
  const ok = await poll(() => missing().length === 0, ms, 50);
  log(`${cl.label}: ${ok ? 'has' : 'does NOT have'} every acknowledged publication` +
    `${ok || !multi() ? '' : ` (missing some on ${listed(missing())})`} (waited ${Date.now() - t} ms)`);
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

// checkDelivery of each channel of `P` at each client of `cls`.
function checkDeliveries(cls, P, { uncertain = false } = {}) {
  for (const cl of cls) {
    for (const p of P.list) {
      checkDelivery(tag(cl.label, p.channel), pubs(cl, p.channel), p.acked, uncertain ? p.uncertain : new Set());
    }
  }
}

// History of `channel` through the API of `base` holds every acknowledged publication,
// in order.
async function checkHistory(base, label, acked, channel) {
  const h = await history(base, channel);
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

// checkHistory of each channel of `P` on `base`; the histories, in the order of P.list.
async function checkHistories(base, label, P) {
  const out = [];
  for (const p of P.list) out.push(await checkHistory(base, tag(label, p.channel), p.acked, p.channel));
  return out;
}

// /metrics of `base` once all its links are up (waited for at most 10 s): link_up is
// LINKS and link_reconnects_total at least `reconnects`.
async function checkLink(base, label, { reconnects = 1 } = {}) {
  const m = await poll(async () => {
    const x = await metrics(base);
    return x.wsx_hub_redis_link_up === LINKS ? x : undefined;
  }, 10000, 200) || await metrics(base).catch(() => ({}));
  info(`${label} metrics: ${mshort(m)}`);
  check(m.wsx_hub_redis_link_up === LINKS, `${label}: wsx_hub_redis_link_up ${LINKS} (${m.wsx_hub_redis_link_up})`);
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

// The Redis servers of --redis ({ host, port, dir }), in its order; with a cluster, its
// seed nodes (scripts/redis.sh gives its three masters).
const server0 = () => ARGS.servers[0];
const cli = (server, ...args) => run('redis-cli', ['-h', server.host, '-p', String(server.port), ...args]);
const redisCli = (...args) => cli(server0(), ...args);
const serverName = (s) => `${s.host}:${s.port}`;

// Stops redis-server `server` with `signal`; the supervisor of scripts/redis.sh starts it
// again on the same port and dir `pauseMs` after it exited. Resolves once it answers PING.
async function restartRedis(signal, pauseMs, server = server0()) {
  must(!!server.dir, `the supervisor's dir of ${serverName(server)} given (--redis-dir)`);
  const pidFile = path.join(server.dir, 'redis.pid');
  const pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
  must(pid > 0, `redis-server pid from ${pidFile}: ${pid}`);
  fs.writeFileSync(path.join(server.dir, 'redis.restart'), `${pauseMs / 1000}\n`);
  const t0 = Date.now();
  process.kill(pid, signal);
  log(`redis-server ${serverName(server)} (pid ${pid}) sent ${signal}; back in ${pauseMs} ms`);
  must(await poll(async () => !(await tcpOpen(server.port, server.host)), 5000, 20),
    `redis-server ${serverName(server)} stopped after ${signal}`);
  log(`redis-server down after ${Date.now() - t0} ms`);
  must(await poll(async () => (await cli(server, 'PING')).out === 'PONG', 15000, 100),
    'redis-server answers PING again after its restart');
  log(`redis-server back after ${Date.now() - t0} ms (new pid ${fs.readFileSync(pidFile, 'utf8').trim()})`);
}

// ------------------------------------------------------------- Redis Cluster
// The masters of the cluster from CLUSTER NODES of the first server that answers:
// [{ id, host, port, ranges: [[from, to], ...], server }] (server: the matching entry of
// ARGS.servers, if any).
async function clusterMasters() {
  for (const s of ARGS.servers) {
    const r = await cli(s, 'CLUSTER', 'NODES');
    if (!r.ok || !r.out.includes('master')) continue;
    const out = [];
    for (const line of r.out.split('\n')) {
      const f = line.trim().split(/\s+/);
      if (f.length < 8 || !f[2].split(',').includes('master')) continue;
      const addr = f[1].split('@')[0].split(',')[0];
      const i = addr.lastIndexOf(':');
      const host = addr.slice(0, i) || s.host;
      const port = Number(addr.slice(i + 1));
      const ranges = f.slice(8).filter((x) => !x.startsWith('[')).map((x) => {
        const [a, b] = x.split('-').map(Number);
        return [a, b === undefined ? a : b];
      });
      const server = ARGS.servers.find((x) => x.port === port);
      out.push({ id: f[0], host, port, ranges, server });
    }
    return out.sort((a, b) => a.port - b.port);
  }
  throw new Fatal('no server of the cluster answers CLUSTER NODES');
}

// The slot of a channel's keys (PREFIX.x.{CHANNEL}: the channel is their hash tag).
async function slotOf(channel) {
  const r = await redisCli('CLUSTER', 'KEYSLOT', `${ARGS.prefix}.c.{${channel}}`);
  const slot = Number(r.out);
  if (!r.ok || !Number.isInteger(slot)) throw new Fatal(`CLUSTER KEYSLOT for ${channel}: ${r.out || r.err}`);
  return slot;
}

// Which master holds each channel: { masters, of: Map(channel -> master) }, with an info
// line of the layout.
async function clusterLayout() {
  const masters = await clusterMasters();
  const of = new Map();
  for (const ch of CHANNELS) {
    const slot = await slotOf(ch);
    const m = masters.find((x) => x.ranges.some(([a, b]) => slot >= a && slot <= b));
    if (!m) throw new Fatal(`no master holds slot ${slot} (channel ${ch})`);
    of.set(ch, m);
  }
  info(`cluster: ${masters.length} masters; channels ${masters.map((m) =>
    `${serverName(m)}: ${listed(CHANNELS.filter((ch) => of.get(ch) === m))}`).join('; ')}`);
  return { masters, of };
}

// Until CLUSTER INFO says cluster_state:ok on every server (at most `ms`); true when it did.
async function clusterOk(ms) {
  return !!await poll(async () => {
    const rs = await Promise.all(ARGS.servers.map((s) => cli(s, 'CLUSTER', 'INFO')));
    return rs.every((r) => r.ok && /^cluster_state:ok\s*$/m.test(r.out));
  }, ms, 100);
}

// Until each node in `bases` reports all its links up (wsx_hub_redis_link_up LINKS), at
// most `ms`: the metrics of each, in order, or undefined.
async function linksUp(bases, ms) {
  return poll(async () => {
    const m = await Promise.all(bases.map((b) => metrics(b)));
    return m.every((x) => x.wsx_hub_redis_link_up === LINKS) ? m : undefined;
  }, ms, 100);
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
// " of CH" in a message, with several channels.
const ofCh = (ch) => (multi() ? ` of ${ch}` : '');
const datas = (xs) => xs.map((p) => p.data);
const npubs = (cl) => CHANNELS.reduce((n, ch) => n + pubs(cl, ch).length, 0);

// Every subscription of `cl` recoverable and positioned (history is on).
function checkPositioned(cl) {
  const bad = failing(cl, (s) => s.ctx.recoverable === true && s.ctx.positioned === true);
  check(bad.length === 0, multi()
    ? `${cl.label}: every subscription recoverable and positioned (history on; not: ${listed(bad)})`
    : `${cl.label}: subscription recoverable and positioned (history on)`);
}

const SCENARIOS = {
  // Three nodes on one Redis (or one Redis Cluster) act as one hub: publications through
  // any node's API reach the subscribers of every node, in order (per channel); presence,
  // join and history are shared.
  async three() {
    const N = ARGS.nodes;
    must(N.length === 3, 'three nodes given');
    if (ARGS.cluster) await clusterLayout();
    const up = await linksUp(N, 10000) || await Promise.all(N.map((b) => metrics(b).catch(() => ({}))));
    N.forEach((b, i) => check(up[i].wsx_hub_redis_link_up === LINKS,
      `node${i + 1}: /metrics wsx_hub_redis_link_up ${LINKS} (${up[i].wsx_hub_redis_link_up})`));
    const cls = [];
    for (let i = 0; i < 3; i++) {
      const cl = await connected(`client${i + 1}@node${i + 1}`, N[i]);
      await subscribedAll(cl, { joinLeave: true });
      checkPositioned(cl);
      cls.push(cl);
    }
    const epochsOf = (ch) => [...new Set(cls.map((cl) => {
      const pos = cl.subs.get(ch).ctx.streamPosition;
      return pos && pos.epoch;
    }))];
    const split = CHANNELS.filter((ch) => epochsOf(ch).length !== 1 || !epochsOf(ch)[0]);
    check(split.length === 0, multi()
      ? `the three nodes give the same stream epoch on every channel (not on ${listed(split)})`
      : `the three nodes give the same stream epoch (${short(epochsOf(CHANNELS[0]))})`);

    // Each channel's publications one at a time, through the nodes in turn; the
    // channels at once.
    const per = multi() ? 10 : 30;
    const total = per * CHANNELS.length;
    const P = new Publishers('publisher');
    await P.runEach({ pick: (i) => N[i % 3], count: per });
    must(P.acked === total, `${total} publications acknowledged, rotating over the 3 nodes' APIs (${P.failed} not)`);
    const badOffsets = P.list.filter((p) => !p.acked.every((a, i) => a.offset === i + 1)).map((p) => p.channel);
    check(badOffsets.length === 0, multi()
      ? `acknowledged offsets 1..${per} on each channel, one sequence across nodes (not on ${listed(badOffsets)})`
      : `acknowledged offsets 1..${per}, one sequence across nodes (${ranges(P.list[0].acked.map((a) => a.offset))})`);
    const badEpochs = P.list.filter((p) => new Set(p.acked.map((a) => a.epoch)).size !== 1).map((p) => p.channel);
    check(badEpochs.length === 0, multi()
      ? `one epoch in every acknowledgement of a channel (not on ${listed(badEpochs)})`
      : 'one epoch in every acknowledgement');
    await Promise.all(cls.map((cl) => received(cl, P, 5000)));
    await sleep(300); // late duplicates would show up by now
    checkDeliveries(cls, P);

    const want = cls.map((cl) => cl.id).sort();
    const seen = await Promise.all(N.map((b) => presenceEverywhere(b, want, 3000)));
    for (let i = 0; i < 3; i++) {
      for (const ch of CHANNELS) {
        equal(seen[i].get(ch), want, `/api/presence${ofCh(ch)} on node${i + 1}: the 3 clients of the 3 nodes`);
      }
    }

    const marks = cls.map((cl) => new Map(CHANNELS.map((ch) => [ch, cl.subs.get(ch).rec.mark()])));
    const D = await connected('client4@node2', N[1]);
    await subscribedAll(D, { joinLeave: true });
    for (const i of [0, 2]) {
      const cl = cls[i];
      const got = await Promise.all(CHANNELS.map((ch) => cl.subs.get(ch).rec
        .waitFor('join', (x) => x.info && x.info.client === D.id, 5000, marks[i].get(ch))
        .then(() => true, () => false)));
      const none = CHANNELS.filter((ch, k) => !got[k]);
      check(none.length === 0, `${cl.label} gets the join of client4 (on node2)` +
        `${multi() ? ` on every channel (not on ${listed(none)})` : ''}`);
    }
    const want4 = [...want, D.id].sort();
    const seen4 = await presenceEverywhere(N[0], want4, 5000);
    for (const ch of CHANNELS) equal(seen4.get(ch), want4, `/api/presence${ofCh(ch)} on node1 after the join: 4 clients`);

    const hs = await checkHistories(N[2], 'node3', P);
    P.list.forEach((p, k) => {
      equal((hs[k].publications || []).length, per, `${tag('node3', p.channel)} /api/history: ${per} publications`);
      equal(hs[k].offset, per, `${tag('node3', p.channel)} /api/history: top offset ${per}`);
    });
    for (const cl of cls) equal(bumps(cl), { reconnects: 0, resubscribes: 0 }, `${cl.label}: never reconnected`);
  },

  // Node A dies (SIGKILL) under a client that came through a load balancer. The client
  // reconnects through it to node B and recovers: every acknowledged publication
  // (published continuously through node C, to the channels in turn) once, in order. A's
  // client leaves presence once its entries expire (--presence-ttl).
  async 'kill-9'() {
    const [A, B, C] = ARGS.nodes;
    must(ARGS.pids.length >= 1 && ARGS.pids[0] > 0, "node A's pid given (--pids)");
    if (ARGS.cluster) await clusterLayout();
    const port = (u) => Number(new URL(u).port);
    const host = (u) => new URL(u).hostname;
    const lb = await new Balancer([
      { name: 'A', host: host(A), port: port(A) },
      { name: 'B', host: host(B), port: port(B) },
    ]).start();
    const X = await connected('X@lb', `http://127.0.0.1:${lb.port}`);
    equal(lb.chosen, ['A'], 'the balancer sent X to node A');
    await subscribedAll(X);
    checkPositioned(X);
    const Y = await connected('Y@nodeB', B);
    await subscribedAll(Y);
    const Z = await connected('Z@nodeC', C);
    await subscribedAll(Z);
    const oldX = X.id;
    const ms = new Map(CHANNELS.map((ch) => [ch, X.subs.get(ch).rec.mark()]));
    const mc = X.rec.mark();

    const P = new Publishers('publisher@C');
    let killedAt = 0;
    const t0 = Date.now();
    await P.run({
      pick: () => C,
      count: 300,
      pace: 8,
      onEach: async () => {
        if (!killedAt && P.acked === 100) {
          process.kill(ARGS.pids[0], 'SIGKILL');
          killedAt = Date.now();
          log(`node A (pid ${ARGS.pids[0]}) killed with SIGKILL after ${P.acked} acknowledged publications`);
        }
      },
    });
    must(killedAt > 0, 'node A was killed during the publishing');
    info(`publisher: ${P.acked} acknowledged in ${secs(Date.now() - t0)} through node C` +
      `${multi() ? ` to ${CHANNELS.length} channels in turn` : ''}, ${P.failed} not; node A killed after ${secs(killedAt - t0)}`);
    check(P.failed === 0, `every publication through node C acknowledged (${P.failed} not)`);

    const re = await X.rec.waitFor('connected', () => true, 10000, mc).catch(() => undefined);
    must(re !== undefined, 'X reconnected after node A died');
    check(lb.chosen.length >= 2 && lb.chosen.slice(1).every((n) => n === 'B'),
      `X's reconnect went through the balancer to node B (${lb.chosen})`);
    const ctxs = await Promise.all(CHANNELS.map((ch) => X.subs.get(ch).rec
      .waitFor('subscribed', () => true, 10000, ms.get(ch)).catch(() => undefined)));
    const none = CHANNELS.filter((ch, k) => !ctxs[k]);
    must(none.length === 0, `X resubscribed after the reconnect${multi() ? ` to every channel (not to ${listed(none)})` : ''}`);
    const notRecovered = CHANNELS.filter((ch, k) => !(ctxs[k].wasRecovering === true && ctxs[k].recovered === true));
    check(notRecovered.length === 0, multi()
      ? `X's resubscribes recovered (wasRecovering and recovered; not on ${listed(notRecovered)})`
      : `X's resubscribe recovered (wasRecovering ${ctxs[0].wasRecovering}, recovered ${ctxs[0].recovered})`);
    const moved = CHANNELS.filter((ch, k) => {
      const was = X.subs.get(ch).ctx.streamPosition;
      return !(ctxs[k].streamPosition && was && ctxs[k].streamPosition.epoch === was.epoch);
    });
    check(moved.length === 0, `the same epoch on node B as on node A${multi() ? ` on every channel (not on ${listed(moved)})` : ''}`);
    await Promise.all([X, Y, Z].map((cl) => received(cl, P, 10000)));
    await sleep(300);
    checkDeliveries([X, Y, Z], P);
    for (const p of P.list) {
      equal(datas(pubs(X, p.channel)), datas(p.acked),
        `${tag('X', p.channel)}: received exactly the acknowledged publications, in order`);
    }
    await checkHistories(B, 'node B', P);

    // A's client leaves presence: only X's new connection, Y and Z remain.
    const newX = re.client;
    check(newX && newX !== oldX, `X has a new client id on node B (${oldX} -> ${newX})`);
    const want = [newX, Y.id, Z.id].sort();
    const bound = ARGS.presenceTtl * 1000 + 9000;
    const seen = await presenceEverywhere(C, want, Math.max(0, killedAt + bound - Date.now()));
    const gone = CHANNELS.every((ch) => isDeepStrictEqual(seen.get(ch), want));
    const after = Date.now() - killedAt;
    info(`presence: node A's client left ${gone ? `${secs(after)} after the kill` : `NOT within ${secs(after)}`}` +
      `${multi() ? ` (all ${CHANNELS.length} channels)` : ''} (--presence-ttl ${ARGS.presenceTtl})`);
    const stale = CHANNELS.filter((ch) => !isDeepStrictEqual(seen.get(ch), want));
    check(gone, `/api/presence on node C: only the live clients within ${secs(bound)} of the kill` +
      ` (want ${short(want)}, last seen ${multi() ? `other on ${listed(stale)}: ${short(stale.length ? seen.get(stale[0]) : [])}`
        : short(seen.get(CHANNELS[0]))})`);
    const onB = await Promise.all(CHANNELS.map((ch) => presenceIds(B, ch)));
    CHANNELS.forEach((ch, k) => equal(onB[k], want, `/api/presence${ofCh(ch)} on node B: the same`));
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

  // A Redis Cluster's master holding the first channel gets SIGKILL and starts again
  // 1.5 s later on the same port and dir (its AOF, appendfsync always, and its
  // nodes-PORT.conf); the cluster is ok again; the rest as in crash, on every channel.
  async 'master-restart'() {
    must(ARGS.cluster, 'a Redis Cluster given (--redis redis+cluster://...)');
    await redisOutage('SIGKILL');
  },

  // Only the nodes' pub/sub connections are killed (CLIENT KILL TYPE pubsub): twice on one
  // server, or once on each master of a cluster, one after another, while node 2's API
  // publishes (four publishers at once, to the channels in turn, for 2 s): the
  // subscribers get everything, in order, without being disconnected; the links
  // reconnect.
  async 'link-cut'() {
    const [N1, N2] = ARGS.nodes;
    const layout = ARGS.cluster ? await clusterLayout() : null;
    // The servers whose links are cut, in turn, and when.
    const targets = layout ? layout.masters : [server0(), server0()];
    const at = layout ? targets.map((_, k) => 500 + 500 * k) : [600, 1400];
    if (layout) {
      const idle = layout.masters.filter((m) => !CHANNELS.some((ch) => layout.of.get(ch) === m));
      check(idle.length === 0, `every master holds one of the channels (not: ${listed(idle.map(serverName))})`);
    }
    const a = await connected('a@node1', N1);
    await subscribedAll(a);
    const b = await connected('b@node1', N1);
    await subscribedAll(b);
    const c = await connected('c@node2', N2);
    await subscribedAll(c);
    const before = await Promise.all([metrics(N1), metrics(N2)]);
    const P = new Publishers('publisher@node2');
    // Four publishers at once, so that publications are in flight when the links are
    // killed, on timers of their own.
    const cuts = [];
    const cut = async (s) => {
      const r = await cli(s, 'CLIENT', 'KILL', 'TYPE', 'pubsub');
      cuts.push(`${r.out || r.err}${layout ? ` on ${s.port}` : ''}`);
      log(`${serverName(s)}: CLIENT KILL TYPE pubsub -> ${r.out || r.err} (${P.acked} acknowledged so far)`);
    };
    const timers = targets.map((s, k) => new Promise((resolve) => setTimeout(() => cut(s).then(resolve), at[k])));
    const lanes = [1, 2, 3, 4].map(() => P.run({ pick: () => N2, pace: 2 }));
    await Promise.all(timers);
    await sleep(600);
    P.stop();
    await Promise.all(lanes);
    info(`publishers: ${P.acked} acknowledged, ${P.failed} not; the links killed at ${at.map(secs).join(', ')}` +
      `${layout ? ` (masters ${targets.map((m) => m.port).join(', ')})` : ''}`);
    check(cuts.length === targets.length && cuts.every((n) => parseInt(n, 10) >= 1),
      `CLIENT KILL TYPE pubsub killed the nodes' links, ${layout ? 'on each master' : 'twice'} (killed: ${cuts.join(', ')})`);
    check(P.failed === 0, `every publication through node 2 acknowledged (${P.failed} not)`);
    await Promise.all([a, b, c].map((cl) => received(cl, P, 10000)));
    await sleep(300);
    checkDeliveries([a, b, c], P);
    for (const cl of [a, b, c]) {
      equal(bumps(cl), { reconnects: 0, resubscribes: 0 }, `${cl.label}: never disconnected nor resubscribed`);
    }
    // One reconnect at least per server cut.
    const n = new Set(targets).size;
    const m1 = await checkLink(N1, 'node1', { reconnects: (before[0].wsx_hub_redis_link_reconnects_total || 0) + n });
    await checkLink(N2, 'node2', { reconnects: (before[1].wsx_hub_redis_link_reconnects_total || 0) + n });
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
    await subscribedAll(a);
    const c = await connected('c@node2', N2);
    await subscribedAll(c);
    const before = await metrics(N1);
    const P = new Publishers('publisher@node2');
    const k = CHANNELS.length;
    await P.run({ pick: () => N2, count: 5 * k, pace: 20 });
    must(await received(a, P, 5000), 'a@node1 receives before the cut');
    let r = await run('ip', ['link', 'set', ARGS.link, 'down']);
    must(r.ok, `ip link set ${ARGS.link} down (${r.err || 'ok'})`);
    const cutAt = Date.now();
    let noticed;
    try {
      await P.run({ pick: () => N2, count: 20 * k, pace: 40 });
      log(`a@node1 has ${npubs(a)} publication(s) ${secs(Date.now() - cutAt)} into the cut`);
      noticed = await poll(async () => (await metrics(N1)).wsx_hub_redis_link_up === 0 && Date.now(), 15000, 100);
      // Then 2 s more, so that node 1 tries (and fails) to reconnect while cut off.
      await sleep(Math.max(0, cutAt + 3000 - Date.now(), noticed ? noticed + 2000 - Date.now() : 0));
      log(`a@node1 has ${npubs(a)} publication(s) at the end of the cut`);
    } finally {
      r = await run('ip', ['link', 'set', ARGS.link, 'up']);
      check(r.ok, `ip link set ${ARGS.link} up after ${secs(Date.now() - cutAt)} (${r.err || 'ok'})`);
    }
    const upAt = Date.now();
    check(!!noticed, `node1 reports its Redis link down (wsx_hub_redis_link_up 0) during the cut` +
      ` (${noticed ? `${secs(noticed - cutAt)} after it` : 'not within 15 s'})`);
    check(P.failed === 0, `every publication through node 2 acknowledged (${P.failed} not)`);
    const ok = await received(a, P, 20000);
    info(`cut for ${secs(upAt - cutAt)}; node1 saw its link down ${noticed ? `after ${secs(noticed - cutAt)}` : 'never'};` +
      ` a@node1 ${ok ? `had all ${P.acked} publications ${secs(Date.now() - upAt)} after the link came back` : 'did NOT get everything'}`);
    await P.run({ pick: () => N2, count: 5 * k, pace: 20 });
    await Promise.all([a, c].map((cl) => received(cl, P, 8000)));
    await sleep(300);
    checkDeliveries([a, c], P);
    const ba = bumps(a);
    info(`client disconnects: a@node1 ${ba.reconnects} reconnect(s), ${ba.resubscribes} resubscribe(s)`);
    await checkLink(N1, 'node1', { reconnects: (before.wsx_hub_redis_link_reconnects_total || 0) + 1 });
    await checkLink(N2, 'node2', { reconnects: 0 });
  },
};

// The restart, crash and master-restart scenarios: one subscriber on each of two nodes
// (to every channel), a publisher per channel through node 1's API all along, and about
// 1 s in the Redis server stopped with `signal` and started again 1.5 s after it exited:
// the one server, or the cluster's master holding the first channel (then also waited
// for: cluster_state:ok on every master).
async function redisOutage(signal) {
  const [N1, N2] = ARGS.nodes;
  const layout = ARGS.cluster ? await clusterLayout() : null;
  const victim = layout ? layout.of.get(CHANNELS[0]).server : server0();
  must(!!victim, `the master of ${CHANNELS[0]} is one of the servers given (--redis)`);
  const onVictim = (p) => !layout || layout.of.get(p.channel).server === victim;
  const a = await connected('a@node1', N1);
  await subscribedAll(a);
  const b = await connected('b@node2', N2);
  await subscribedAll(b);
  const before = await Promise.all([metrics(N1), metrics(N2)]);
  const P = new Publishers('publisher@node1');
  const publishing = P.runEach({ pick: () => N1, pace: multi() ? 40 : 10 });
  await poll(() => P.acked >= 50, 5000, 20);
  const n0 = P.acked;
  if (layout) {
    info(`stopping the master ${serverName(victim)} of ${CHANNELS[0]} (${signal}); its channels:` +
      ` ${listed(P.list.filter(onVictim).map((p) => p.channel))}`);
  }
  const stoppedAt = Date.now();
  await restartRedis(signal, 1500, victim);
  if (layout) {
    const t = Date.now();
    must(await clusterOk(20000), 'cluster_state:ok on every master again after the restart (waited 20 s)');
    log(`cluster_state:ok on every master ${Date.now() - t} ms after the restarted one answered PING`);
    // The restarted master is the same member of the cluster (its nodes-PORT.conf),
    // with the same slots.
    const was = layout.of.get(CHANNELS[0]);
    const now = (await clusterMasters()).find((m) => m.port === was.port);
    check(!!now && now.id === was.id && isDeepStrictEqual(now.ranges, was.ranges),
      `the restarted master is the same cluster node with the same slots (id ${was.id} -> ${now && now.id},` +
      ` slots ${short(was.ranges)} -> ${short(now && now.ranges)})`);
  }
  const upAt = Date.now();
  // Every link back (metrics), then a while of normal publishing.
  const back = await linksUp([N1, N2], 15000);
  log(`links ${back ? 'up again' : 'NOT up again within 15 s'}; ${P.acked - n0} acknowledged since the stop`);
  const since = P.list.map((p) => p.acked.length);
  const n1 = P.acked;
  await poll(() => P.acked >= n1 + 50 && P.list.every((p, k) => p.acked.length >= since[k] + 5), 8000, 20);
  P.stop();
  await publishing;
  if (layout) {
    const failedOn = (pred) => P.list.filter(pred).reduce((n, p) => n + p.failed.length, 0);
    info(`publishers: ${P.acked} acknowledged, ${P.failed} not: ${failedOn(onVictim)} to the` +
      ` ${P.list.filter(onVictim).length} channel(s) of the restarted master, ${failedOn((p) => !onVictim(p))} to the others`);
    // How long a channel went without an acknowledgement around the outage (from the
    // stop until the cluster was ok again, and a second after).
    const pause = (pred) => Math.max(0, ...P.list.filter(pred).map((p) => {
      const ts = [stoppedAt, ...p.acked.map((x) => x.at).filter((t) => t > stoppedAt && t < upAt + 1000), upAt + 1000];
      return Math.max(...ts.slice(1).map((t, i) => t - ts[i]));
    }));
    info(`longest wait for an acknowledgement from the stop to 1 s after cluster_state:ok (${secs(upAt - stoppedAt)}):` +
      ` ${secs(pause(onVictim))} on the restarted master's channels, ${secs(pause((p) => !onVictim(p)))} on the others`);
  } else {
    info(`publisher: ${P.acked} acknowledged, ${P.failed} not (Redis down)`);
  }
  const slow = P.list.filter((p, k) => p.acked.length < since[k] + 5).map((p) => p.channel);
  check(P.acked >= n1 + 50 && slow.length === 0, `publishing works again after the restart (${P.acked - n1}` +
    ` acknowledged since${multi() ? `; fewer than 5 to ${listed(slow)}` : ''})`);
  const unordered = P.list.filter((p) => !p.acked.every((x, i) => i === 0 || x.offset > p.acked[i - 1].offset));
  check(unordered.length === 0, multi()
    ? `acknowledged offsets ascend on each channel (not on ${listed(unordered.map((p) => p.channel))})`
    : `acknowledged offsets ascend (${ranges(P.list[0].acked.map((x) => x.offset))})`);
  const epochs = (p) => [...new Set(p.acked.map((x) => x.epoch))];
  const split = P.list.filter((p) => epochs(p).length !== 1);
  check(split.length === 0, multi()
    ? `one epoch before and after the restart on each channel (not on ${listed(split.map((p) => p.channel))})`
    : `one epoch before and after the restart (${short(epochs(P.list[0]))})`);
  await Promise.all([a, b].map((cl) => received(cl, P, 15000)));
  await sleep(500);
  checkDeliveries([a, b], P, { uncertain: true });
  await checkHistories(N1, 'node1', P);
  await checkHistories(N2, 'node2', P);
  const ba = bumps(a);
  const bb = bumps(b);
  info(`client disconnects: a@node1 ${ba.reconnects} reconnect(s), ${ba.resubscribes} resubscribe(s);` +
    ` b@node2 ${bb.reconnects} reconnect(s), ${bb.resubscribes} resubscribe(s)`);
  const subs = [a, b].flatMap((cl) => [...cl.subs.values()].flatMap((s) => s.rec.all('subscribed', s.mark)));
  check(subs.every((x) => x.recovered === true),
    `every resubscribe after the restart recovered (${subs.map((x) => `recovered ${x.recovered}`).join(', ') || 'none'})`);
  await checkLink(N1, 'node1', { reconnects: (before[0].wsx_hub_redis_link_reconnects_total || 0) + 1 });
  await checkLink(N2, 'node2', { reconnects: (before[1].wsx_hub_redis_link_reconnects_total || 0) + 1 });
}

// -------------------------------------------------------------------- main
function usage(code) {
  process.stderr.write(
    'usage: nodes.mjs SCENARIO --nodes URL,URL[,URL] --api-key KEY [--redis URL] [--channels CH,...]\n' +
    '                 [--prefix PREFIX] [--pids PID,...] [--redis-dir DIR[,DIR,...]] [--link IFACE]\n' +
    '                 [--presence-ttl S]\n' +
    '       nodes.mjs --list\n');
  process.exit(code);
}

// The servers of a Redis URL: redis://H:P (one), redis+cluster://H:P,H:P,... (a
// cluster's seeds), or several redis:// URLs separated by commas (a cluster too, as for
// wsx hub --redis). Undefined when it is none of those.
function redisServers(url) {
  const one = /^rediss?(\+cluster)?:\/\/(?:[^@/]*@)?([^/]*)/.exec(url);
  if (!one) return undefined;
  const lists = one[1] ? [one[2]] : url.split(',').map((u) => (/^rediss?:\/\/(?:[^@/]*@)?([^/]*)/.exec(u.trim()) || [])[1]);
  if (lists.some((x) => !x)) return undefined;
  const servers = lists.join(',').split(',').filter(Boolean).map((h) => {
    const i = h.lastIndexOf(':');
    return i > 0 ? { host: h.slice(0, i), port: Number(h.slice(i + 1)) } : { host: h, port: 6379 };
  });
  if (!servers.length || servers.some((s) => !Number.isInteger(s.port) || s.port <= 0)) return undefined;
  return { cluster: !!one[1] || servers.length > 1, servers };
}

async function main() {
  const argv = process.argv.slice(2);
  const opts = {
    nodes: [], apiKey: '', pids: [], redis: '', redisPort: 0, redisHost: '127.0.0.1', redisDirs: [], link: '',
    presenceTtl: 6, channels: ['c'], prefix: 'wsx',
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
    else if (a === '--redis') opts.redis = val();
    else if (a === '--redis-port') opts.redisPort = Number(val());
    else if (a === '--redis-host') opts.redisHost = val();
    else if (a === '--redis-dir') opts.redisDirs = val().split(',').filter(Boolean);
    else if (a === '--channels') opts.channels = val().split(',').filter(Boolean);
    else if (a === '--prefix') opts.prefix = val();
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
  if (!scenario || !(scenario in SCENARIOS) || opts.nodes.length < 2 || !opts.channels.length) usage(2);
  const redis = redisServers(opts.redis || `redis://${opts.redisHost}:${opts.redisPort || 6379}`);
  if (!redis) usage(2);
  redis.servers.forEach((s, i) => {
    s.dir = opts.redisDirs[i] || '';
  });
  opts.cluster = redis.cluster;
  opts.servers = redis.servers;
  ARGS = opts;
  CHANNELS = opts.channels;
  log(`scenario ${scenario}: nodes ${opts.nodes.join(' ')}; Redis ${opts.cluster ? 'Cluster ' : ''}` +
    `${opts.servers.map(serverName).join(',')}; channels ${CHANNELS.join(' ')}`);
  return runScenario(async () => {
    if (opts.cluster) {
      LINKS = (await clusterMasters()).length;
      log(`a cluster of ${LINKS} masters: each node should have ${LINKS} pub/sub links`);
    }
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
