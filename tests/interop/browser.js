#!/usr/bin/env node
'use strict';
// Drives headless Chromium (playwright-core, with the system's Chromium) through
// browser.html against an echo server. Run with --help for the options.

const fs = require('fs');
const os = require('os');
const path = require('path');
const { pathToFileURL } = require('url');
const common = require(path.join(__dirname, 'common.js'));

const USAGE = `usage: browser.js --url ws://127.0.0.1:PORT/ [options]

Opens browser.html (file://) in headless Chromium; the page connects to URL,
sends compressible text (20 KiB and 256 KiB of repeated words) and binary
(64 KiB of patterned bytes), checks every echo, checks ws.extensions, closes
with 1000 and checks the CloseEvent (code 1000, wasClean). The page's JSON
result is printed on stdout (and written to --result). Exit 0 on success, 1 on
a failed check (the browser's console output is printed on stderr), 2 when the
browser could not be driven.

options:
  --url URL            ws:// URL of the echo server (required)
  --deflate on|off|any ws.extensions must contain permessage-deflate (on), be
                       empty (off), or is not checked (any; default)
  --chromium PATH      browser binary (default: $CHROMIUM or /usr/bin/chromium)
  --result FILE        also write the JSON result to FILE
  --timeout S          time limit for the page in seconds (default: 20)
  --help               this text (and a self-check that playwright-core loads)
`;

const SPEC = {
  help: 'flag',
  url: 'string',
  deflate: 'string',
  chromium: 'string',
  result: 'string',
  timeout: 'int',
};

async function main() {
  let parsed;
  try {
    parsed = common.parseArgs(process.argv.slice(2), SPEC);
  } catch (e) {
    process.stderr.write(`${e.message}\n\n${USAGE}`);
    return 2;
  }
  const { opts } = parsed;
  const { chromium } = require('playwright-core');
  if (opts.help) {
    process.stdout.write(USAGE);
    const pw = require('playwright-core/package.json');
    process.stdout.write(`playwright-core ${pw.version} loaded (chromium: ${typeof chromium.launch})\n`);
    return 0;
  }
  const deflate = opts.deflate || 'any';
  if (!opts.url || !['on', 'off', 'any'].includes(deflate)) {
    process.stderr.write(USAGE);
    return 2;
  }
  const executablePath = opts.chromium || process.env.CHROMIUM || '/usr/bin/chromium';
  const timeout = (opts.timeout || 20) * 1000;
  const pageUrl = new URL(pathToFileURL(path.join(__dirname, 'browser.html')));
  pageUrl.searchParams.set('url', opts.url);
  pageUrl.searchParams.set('deflate', deflate);
  pageUrl.searchParams.set('timeout', String(timeout - 2000));

  const consoleLines = [];
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsx-interop-chromium-'));
  // Also on SIGTERM/SIGINT (playwright-core then closes the browser and exits).
  process.on('exit', () => fs.rmSync(userDataDir, { recursive: true, force: true }));
  let context;
  let result = null;
  let driverError = null;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath,
      headless: true,
      chromiumSandbox: false,
      timeout: 30000,
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
    const page = context.pages()[0] || (await context.newPage());
    page.on('console', (m) => consoleLines.push(`console.${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
    page.on('websocket', (ws) => {
      consoleLines.push(`websocket opened: ${ws.url()}`);
      ws.on('close', () => consoleLines.push('websocket closed'));
      ws.on('socketerror', (e) => consoleLines.push(`websocket error: ${e}`));
    });
    await page.goto(pageUrl.href, { timeout: 10000 });
    await page.waitForFunction(() => window.__wsxResult !== undefined, null, { timeout, polling: 100 });
    result = await page.evaluate(() => window.__wsxResult);
  } catch (e) {
    driverError = e;
  } finally {
    if (context) await context.close().catch(() => {});
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }

  if (result) {
    const json = JSON.stringify(result);
    process.stdout.write(`${json}\n`);
    if (opts.result) fs.writeFileSync(opts.result, `${json}\n`);
  }
  if (driverError || !result || !result.ok) {
    if (driverError) common.log(`FAIL: browser driver: ${driverError.message}`);
    if (result) for (const e of result.errors) common.log(`FAIL: ${e}`);
    common.log(`--- browser console (${consoleLines.length} lines) ---`);
    for (const l of consoleLines) common.log(l);
    common.log('--- end of browser console ---');
    return driverError && !result ? 2 : 1;
  }
  common.log(`ok: ${result.echoes} echoes, extensions=${JSON.stringify(result.extensions)}, close=${JSON.stringify(result.close)}`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    common.log(`FAIL: browser driver crashed: ${e.stack || e}`);
    process.exit(2);
  },
);
