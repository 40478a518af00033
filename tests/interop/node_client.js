#!/usr/bin/env node
'use strict';
// Interop peer: a `ws` (npm) client against an echo server (`wsx serve`).
// Same checks as py_client.py; run with --help for the options.

const path = require('path');
const common = require(path.join(__dirname, 'common.js'));
const WebSocket = require('ws');

const USAGE = `usage: node_client.js URL [options]

A ws (npm) client against an echo server: sends text and binary messages of
several sizes (up to 1 MiB, compressible and not), checks every echo
byte-exact and of the same type, checks the negotiated Sec-WebSocket-Extensions,
checks that compressible echoes were compressed on the wire when
permessage-deflate is on, closes with 1000 and checks the server's close code.
Exit 0 when every check passed, 1 otherwise.

options:
  --no-deflate                  do not offer permessage-deflate
  --server-no-context-takeover  offer server_no_context_takeover
  --client-no-context-takeover  offer client_no_context_takeover
  --server-max-window-bits N    offer server_max_window_bits=N
  --client-max-window-bits N    offer client_max_window_bits=N (default: the bare parameter)
  --expect-deflate on|off|any   whether permessage-deflate must be negotiated (default: any)
  --expect-response SPEC        check a response parameter (repeatable): NAME, NAME=V,
                                NAME<=V, NAME?<=V (if present), !NAME (absent)
  --no-wire-check               do not check that the server compressed its echoes
  --timeout S                   overall time limit in seconds (default: 25)
  --help                        this text (and a self-check that ws loads)
`;

const SPEC = {
  help: 'flag',
  'no-deflate': 'flag',
  'server-no-context-takeover': 'flag',
  'client-no-context-takeover': 'flag',
  'server-max-window-bits': 'int',
  'client-max-window-bits': 'int',
  'expect-deflate': 'string',
  'expect-response': 'list',
  'no-wire-check': 'flag',
  timeout: 'int',
};

function finish(errors) {
  for (const e of errors) common.log(`FAIL: ${e}`);
  if (errors.length === 0) common.log('ok');
  process.exit(errors.length ? 1 : 0);
}

async function main() {
  let parsed;
  try {
    parsed = common.parseArgs(process.argv.slice(2), SPEC);
  } catch (e) {
    process.stderr.write(`${e.message}\n\n${USAGE}`);
    process.exit(2);
  }
  const { opts, positional } = parsed;
  if (opts.help) {
    process.stdout.write(USAGE);
    process.stdout.write(`ws ${require('ws/package.json').version} loaded from ${path.dirname(require.resolve('ws'))}\n`);
    process.exit(0);
  }
  const expectDeflate = opts['expect-deflate'] || 'any';
  if (positional.length !== 1 || !['on', 'off', 'any'].includes(expectDeflate)) {
    process.stderr.write(USAGE);
    process.exit(2);
  }
  const url = positional[0];
  const timeout = (opts.timeout || 25) * 1000;
  setTimeout(() => finish([`timed out after ${timeout / 1000} s`]), timeout).unref();

  const errors = [];
  const ws = new WebSocket(url, {
    perMessageDeflate: common.deflateOptions(opts),
    maxPayload: 64 * common.MIB,
    handshakeTimeout: 10000,
  });
  ws.binaryType = 'nodebuffer';
  let answer = null;
  let socket = null;
  ws.on('upgrade', (res) => {
    answer = res.headers['sec-websocket-extensions'] || null;
    socket = res.socket;
    const req = res.req || ws._req; // ws._req: the pending ClientRequest (for logging only)
    const offer = req && req.getHeader('sec-websocket-extensions');
    common.log(`offer:    ${JSON.stringify(offer || null)}`);
    common.log(`response: ${JSON.stringify(answer)}`);
  });
  const inbox = [];
  let waiter = null;
  ws.on('message', (data, isBinary) => {
    inbox.push({ data, isBinary });
    if (waiter) waiter();
  });
  const closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: String(reason) })));
  let closeInfo = null;
  closed.then((c) => {
    closeInfo = c;
    if (waiter) waiter();
  });

  try {
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
      ws.once('unexpected-response', (req, res) => reject(new Error(`unexpected response ${res.statusCode}`)));
    });
  } catch (e) {
    finish([`handshake failed: ${e.message}`]);
    return;
  }
  ws.on('error', (e) => errors.push(`error: ${e.message}`));

  const params = common.deflateParams(answer);
  const deflateOn = params !== null;
  common.log(`active extensions: ${JSON.stringify(ws.extensions)}`);
  if (expectDeflate === 'on' && !deflateOn) {
    errors.push(`permessage-deflate not negotiated (response Sec-WebSocket-Extensions: ${JSON.stringify(answer)})`);
  }
  if (expectDeflate === 'off' && deflateOn) {
    errors.push(`permessage-deflate negotiated but must not be: ${JSON.stringify(answer)}`);
  }
  if (deflateOn) errors.push(...common.checkParams(params, opts['expect-response'], 'response'));
  else if (opts['expect-response'].length && expectDeflate === 'on') {
    errors.push(`cannot check response parameters ${opts['expect-response']}: no permessage-deflate`);
  }

  const nextMessage = () =>
    new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no echo within 10 s')), 10000);
      const check = () => {
        if (inbox.length) {
          clearTimeout(t);
          waiter = null;
          resolve(inbox.shift());
        } else if (closeInfo) {
          clearTimeout(t);
          waiter = null;
          reject(new Error(`connection closed: ${closeInfo.code} ${closeInfo.reason}`));
        }
      };
      waiter = check;
      check();
    });

  const messages = common.clientMessages();
  const base = socket ? socket.bytesRead : 0;
  const start = Date.now();
  let allEchoed = true;
  for (const [label, payload] of messages) {
    const binary = typeof payload !== 'string';
    ws.send(payload, { binary });
    let echo;
    try {
      echo = await nextMessage();
    } catch (e) {
      errors.push(`${label}: no echo: ${e.message}`);
      allEchoed = false;
      break;
    }
    const sent = common.asBytes(payload);
    const got = Buffer.isBuffer(echo.data) ? echo.data : Buffer.concat(echo.data);
    if (echo.isBinary !== binary) {
      errors.push(`${label}: echo is ${echo.isBinary ? 'binary' : 'text'}, sent ${binary ? 'binary' : 'text'}`);
    } else if (!got.equals(sent)) {
      let first = 0;
      while (first < got.length && first < sent.length && got[first] === sent[first]) first++;
      errors.push(`${label}: echo differs (sent ${sent.length}, got ${got.length}, first difference at ${first})`);
    }
  }
  if (allEchoed) {
    const got = socket ? socket.bytesRead - base : 0;
    common.log(`${messages.length} echoes checked in ${(Date.now() - start) / 1000} s, ${got} bytes received`);
    if (deflateOn && !opts['no-wire-check']) {
      const { budget, compressible } = common.wireBudget(messages.map(([, p]) => common.asBytes(p)));
      common.log(`wire check: ${got} bytes received, budget ${budget} (${compressible} compressible)`);
      if (!socket) errors.push('wire check: no socket');
      else if (got > budget) {
        errors.push(
          `server echoes not compressed: ${got} bytes on the wire for ${compressible} bytes of ` +
            `compressible payload (budget ${budget})`,
        );
      }
    }
  }

  if (ws.readyState === WebSocket.OPEN) ws.close(1000, 'interop done');
  const c = await Promise.race([closed, new Promise((r) => setTimeout(() => r(null), 5000))]);
  if (c === null) errors.push('close handshake did not finish within 5 s');
  else if (c.code !== 1000) errors.push(`server close code ${c.code} ${JSON.stringify(c.reason)}, expected 1000`);
  else common.log(`closed: server sent ${c.code}`);
  finish(errors);
}

main().catch((e) => finish([`crashed: ${e.stack || e}`]));
