'use strict';
// Shared helpers of the Node interop peers (node_client.js, node_server.js).
// The same payloads and checks exist in Python in common.py; keep them alike.

const zlib = require('zlib');

const KIB = 1024;
const MIB = 1024 * 1024;

const WORDS = (
  'lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod ' +
  'tempor incididunt ut labore et dolore magna aliqua websocket deflate ' +
  'frame mask opcode fin rsv1 payload window context takeover '
)
  .split(' ')
  .filter((w) => w);

/** Exactly `size` ASCII bytes of repeated words: very compressible. */
function wordsText(size, seed) {
  const out = [];
  let n = 0;
  let i = seed;
  while (n < size) {
    let w = WORDS[(i * 7 + Math.floor(i / WORDS.length)) % WORDS.length];
    if (i % 50 === 0) w = `${w}${i % 1000}`;
    out.push(w);
    n += w.length + 1;
    i += 1;
  }
  return out.join(' ').slice(0, size);
}

/**
 * `size` bytes of a 100-byte repeating pattern: very compressible, even with a
 * 9-bit window (zlib then finds matches up to 250 bytes back).
 */
function patternedBytes(size) {
  const pattern = Buffer.concat([
    Buffer.from(Array.from({ length: 89 }, (_, i) => (i * 31 + 7) % 256)),
    Buffer.from('wsx-pattern'),
  ]);
  const out = Buffer.alloc(size);
  for (let i = 0; i < size; i += pattern.length) pattern.copy(out, i, 0, Math.min(pattern.length, size - i));
  return out;
}

/** `size` pseudo-random bytes (xorshift32): incompressible, deterministic. */
function randomBytes(size, seed) {
  let x = seed >>> 0 || 1;
  const out = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    const b = Buffer.alloc(4);
    b.writeUInt32LE(x);
    b.copy(out, i, 0, Math.min(4, size - i));
  }
  return out;
}

const UNICODE = 'héllo wörld ✓ 日本語 🚀 ünïcødé';

/** [label, payload] sent by the client, in order (strings are text messages, Buffers binary). */
function clientMessages() {
  return [
    ['text hello', 'hello'],
    ['text unicode', UNICODE],
    ['text empty', ''],
    ['binary 256 B', Buffer.from(Array.from({ length: 256 }, (_, i) => i))],
    ['text 1 KiB words', wordsText(1 * KIB, 1)],
    ['text 20 KiB words', wordsText(20 * KIB, 2)],
    ['text 20 KiB words (again)', wordsText(20 * KIB, 2)],
    ['binary 64 KiB pattern', patternedBytes(64 * KIB)],
    ['text 256 KiB words', wordsText(256 * KIB, 3)],
    ['text 1 MiB words', wordsText(1 * MIB, 4)],
    ['binary 1 MiB random', randomBytes(1 * MIB, 5)],
    ['binary empty', Buffer.alloc(0)],
    ['text 17 KiB words', wordsText(17 * KIB, 6)],
  ];
}

function asBytes(p) {
  return typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p);
}

/**
 * { budget, compressible }: the bytes a compressing peer may send for these
 * payloads. Compressible (zlib below half): at most three quarters of the size
 * (room for weak compression with a 9-bit window); otherwise the full size;
 * plus 14 bytes of frame header each and 16 KiB of slack. See common.py.
 */
function wireBudget(payloads) {
  let budget = 16 * KIB;
  let compressible = 0;
  for (const p of payloads) {
    if (p.length >= 64 && zlib.deflateSync(p, { level: 6 }).length < Math.floor(p.length / 2)) {
      budget += Math.floor((p.length * 3) / 4) + 14;
      compressible += p.length;
    } else {
      budget += p.length + 14 + Math.floor(p.length / 100);
    }
  }
  return { budget, compressible };
}

/** Parameters of the first permessage-deflate in a Sec-WebSocket-Extensions value, or null. */
function deflateParams(header) {
  if (!header) return null;
  for (const ext of String(header).split(',')) {
    const parts = ext.split(';').map((s) => s.trim());
    if (parts[0].toLowerCase() !== 'permessage-deflate') continue;
    const params = {};
    for (const p of parts.slice(1)) {
      if (!p) continue;
      const eq = p.indexOf('=');
      if (eq < 0) params[p.toLowerCase()] = null;
      else params[p.slice(0, eq).trim().toLowerCase()] = p.slice(eq + 1).trim().replace(/^"|"$/g, '');
    }
    return params;
  }
  return null;
}

function fmtParams(params) {
  if (!params) return '(no permessage-deflate)';
  return ['permessage-deflate', ...Object.entries(params).map(([k, v]) => (v === null ? k : `${k}=${v}`))].join('; ');
}

const EXPECT_RE = /^(!)?([a-z_]+)(\?)?(?:(=|<=)(\d+))?$/;

/** Same syntax as common.py check_params: NAME, NAME=V, NAME<=V, NAME?<=V, !NAME. */
function checkParams(params, specs, what) {
  const errors = [];
  for (const spec of specs) {
    const m = EXPECT_RE.exec(spec);
    if (!m) {
      errors.push(`bad expectation ${JSON.stringify(spec)}`);
      continue;
    }
    const [, neg, name, optional, op, value] = m;
    const present = Object.prototype.hasOwnProperty.call(params, name);
    if (neg) {
      if (present) errors.push(`${what}: ${name} must be absent, got ${fmtParams(params)}`);
      continue;
    }
    if (!present) {
      if (!optional) errors.push(`${what}: ${name} missing, got ${fmtParams(params)}`);
      continue;
    }
    if (!op) continue;
    const got = params[name];
    if (got === null || !/^\d+$/.test(got)) {
      errors.push(`${what}: ${name} needs a value ${op}${value}, got ${JSON.stringify(got)}`);
    } else if (op === '=' && Number(got) !== Number(value)) {
      errors.push(`${what}: ${name}=${got}, expected ${value}`);
    } else if (op === '<=' && Number(got) > Number(value)) {
      errors.push(`${what}: ${name}=${got}, expected <= ${value}`);
    }
  }
  return errors;
}

/**
 * Minimal argv parser: `spec` maps option names (without --) to 'flag',
 * 'int', 'string' or 'list'. Returns { opts, positional } or throws.
 */
function parseArgs(argv, spec) {
  const opts = {};
  const positional = [];
  for (const [k, t] of Object.entries(spec)) if (t === 'list') opts[k] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) {
      positional.push(a);
      continue;
    }
    let name = a.slice(2);
    let value;
    const eq = name.indexOf('=');
    if (eq >= 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    const t = spec[name];
    if (!t) throw new Error(`unknown option --${name}`);
    if (t === 'flag') {
      opts[name] = true;
      continue;
    }
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new Error(`--${name} needs a value`);
      value = argv[++i];
    }
    if (t === 'int') {
      if (!/^\d+$/.test(value)) throw new Error(`--${name}: not a number: ${value}`);
      opts[name] = Number(value);
    } else if (t === 'list') opts[name].push(value);
    else opts[name] = value;
  }
  return { opts, positional };
}

/** The perMessageDeflate option of `ws` from the shared deflate flags (only what is set). */
function deflateOptions(opts) {
  if (opts['no-deflate']) return false;
  const o = { threshold: 0 };
  if (opts['server-no-context-takeover']) o.serverNoContextTakeover = true;
  if (opts['client-no-context-takeover']) o.clientNoContextTakeover = true;
  if (opts['server-max-window-bits'] !== undefined) o.serverMaxWindowBits = opts['server-max-window-bits'];
  if (opts['client-max-window-bits'] !== undefined) o.clientMaxWindowBits = opts['client-max-window-bits'];
  return o;
}

function log(msg) {
  process.stderr.write(`${msg}\n`);
}

module.exports = {
  KIB,
  MIB,
  wordsText,
  patternedBytes,
  randomBytes,
  clientMessages,
  asBytes,
  wireBudget,
  deflateParams,
  fmtParams,
  checkParams,
  parseArgs,
  deflateOptions,
  log,
};
