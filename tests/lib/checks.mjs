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

/**
 * Runs a scenario: a thrown Fatal or exception counts as a failure, `cleanup`
 * runs either way (its errors ignored). Returns the exit status: 0 when every
 * check passed, 1 otherwise.
 */
export async function runScenario(scenario, cleanup) {
  process.on('unhandledRejection', (e) => log(`unhandled rejection: ${short(e && e.stack ? e.stack : e)}`));
  try {
    await scenario();
  } catch (e) {
    if (!(e instanceof Fatal)) {
      failures.push(`exception: ${e && e.message}`);
      log(`FAIL: exception: ${e && e.stack ? e.stack : short(e)}`);
    } else if (!failures.includes(e.message)) {
      failures.push(e.message);
      log(`FAIL: ${e.message}`);
    }
  } finally {
    try {
      await cleanup();
    } catch (e) {
      // ignore
    }
  }
  if (failures.length) {
    log(`${failures.length} check(s) failed`);
    return 1;
  }
  log('all checks passed');
  return 0;
}

/** Runs `main` (which returns the exit status) and exits with its status. */
export function exitWith(main) {
  main().then((code) => process.exit(code), (e) => {
    log(`FAIL: ${e && e.stack}`);
    process.exit(1);
  });
}
