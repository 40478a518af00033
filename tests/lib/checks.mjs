// What the Node test programs of the hub share (tests/hub/sdk_node.mjs,
// tests/redis/nodes.mjs): a log with times since start, named checks that are
// counted as failures, and the error that ends a scenario at a failed must().
//
// Every check logs a line to stderr ("ok: ..." or "FAIL: ..."); `failures`
// lists what failed, for the program's exit status.

import { isDeepStrictEqual } from 'node:util';

const START = Date.now();

/** What failed so far. */
export const failures = [];

/** A failed check that ends the scenario. */
export class Fatal extends Error {}

/** A line on stderr, with the seconds since start. */
export function log(msg) {
  process.stderr.write(`[${((Date.now() - START) / 1000).toFixed(3).padStart(7)}] ${msg}\n`);
}

/** A value as JSON (or as a string), cut at `limit` characters. */
export function short(v, limit = 300) {
  let s;
  try {
    s = typeof v === 'string' ? v : JSON.stringify(v);
  } catch (e) {
    s = String(v);
  }
  if (s === undefined) s = String(v);
  return s.length > limit ? `${s.slice(0, limit)}... (${s.length} chars)` : s;
}

/** Logs `what` as ok or failed; returns `cond`. */
export function check(cond, what) {
  if (cond) {
    log(`ok: ${what}`);
    return true;
  }
  failures.push(what);
  log(`FAIL: ${what}`);
  return false;
}

/** Equality of JSON values (what went through the hub as JSON). */
export function equal(got, want, what) {
  const g = JSON.parse(JSON.stringify(got === undefined ? null : got));
  const w = JSON.parse(JSON.stringify(want === undefined ? null : want));
  if (isDeepStrictEqual(g, w)) {
    log(`ok: ${what}`);
    return true;
  }
  return check(false, `${what}: got ${short(got)}, want ${short(want)}`);
}

/** A check whose failure ends the scenario. */
export function must(cond, what) {
  if (!check(cond, what)) throw new Fatal(what);
}

/** Waits `ms` milliseconds. */
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
