#!/usr/bin/env node
'use strict';
// Interop peer: a `ws` (npm) echo server, for `wsx connect`.
// Same checks as py_server.py; run with --help for the options.

const fs = require('fs');
const path = require('path');
const common = require(path.join(__dirname, 'common.js'));
const WebSocket = require('ws');

const USAGE = `usage: node_server.js [options]

A ws (npm) echo server on 127.0.0.1: echoes every text and binary message and
checks each connection: the client's permessage-deflate offer (--expect-offer),
whether deflate was negotiated (--expect-deflate), that the client compressed
its compressible messages on the wire when deflate is on, and that the client
closed with 1000. Always prints on stderr
  RESPONSE-EXTENSIONS: <the Sec-WebSocket-Extensions it answered, or nothing>
With --once it serves one connection and exits 0 when every check passed, 1
otherwise.

options:
  --host ADDR                   loopback address (default: 127.0.0.1)
  --port N                      port (default: 0, a free one)
  --port-file FILE              write the port to FILE once listening
  --no-deflate                  decline permessage-deflate
  --server-no-context-takeover  serverNoContextTakeover: true
  --client-no-context-takeover  clientNoContextTakeover: true
  --server-max-window-bits N    serverMaxWindowBits: N
  --client-max-window-bits N    clientMaxWindowBits: N (ws then declines offers
                                without client_max_window_bits)
  --expect-deflate on|off|any   whether permessage-deflate must be negotiated (default: any)
  --expect-offer SPEC           check an offer parameter (repeatable): NAME, NAME=V,
                                NAME<=V, NAME?<=V (if present), !NAME (absent)
  --no-wire-check               do not check that the client compressed
  --once                        serve one connection, then exit with the verdict
  --timeout S                   with --once: give up after S seconds (default: 30)
  --help                        this text (and a self-check that ws loads)
`;

const SPEC = {
  help: 'flag',
  host: 'string',
  port: 'int',
  'port-file': 'string',
  'no-deflate': 'flag',
  'server-no-context-takeover': 'flag',
  'client-no-context-takeover': 'flag',
  'server-max-window-bits': 'int',
  'client-max-window-bits': 'int',
  'expect-deflate': 'string',
  'expect-offer': 'list',
  'no-wire-check': 'flag',
  once: 'flag',
  timeout: 'int',
};

function main() {
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
  if (positional.length || !['on', 'off', 'any'].includes(expectDeflate)) {
    process.stderr.write(USAGE);
    process.exit(2);
  }
  const host = opts.host || '127.0.0.1';
  const timeout = (opts.timeout || 30) * 1000;

  let answer = '';
  const wss = new WebSocket.Server({
    host,
    port: opts.port || 0,
    perMessageDeflate: common.deflateOptions(opts),
    maxPayload: 64 * common.MIB,
  });
  wss.on('headers', (headers) => {
    const h = headers.find((l) => /^sec-websocket-extensions:/i.test(l));
    answer = h ? h.replace(/^[^:]*:\s*/, '') : '';
  });
  wss.on('listening', () => {
    const port = wss.address().port;
    common.log(`listening on ws://${host}:${port}/`);
    if (opts['port-file']) {
      fs.writeFileSync(`${opts['port-file']}.tmp`, `${port}\n`);
      fs.renameSync(`${opts['port-file']}.tmp`, opts['port-file']);
    }
  });
  wss.on('error', (e) => {
    common.log(`FAIL: server error: ${e.message}`);
    process.exit(1);
  });
  if (opts.once) {
    setTimeout(() => {
      common.log(`FAIL: no complete connection within ${timeout / 1000} s`);
      process.exit(1);
    }, timeout).unref();
  }

  wss.on('connection', (ws, req) => {
    const errors = [];
    const offer = req.headers['sec-websocket-extensions'] || null;
    const response = answer;
    common.log(`connection from ${req.socket.remoteAddress}:${req.socket.remotePort}`);
    common.log(`offer:    ${JSON.stringify(offer)}`);
    common.log(`RESPONSE-EXTENSIONS: ${response}`);
    if (opts['expect-offer'].length) {
      const offered = common.deflateParams(offer);
      if (!offered) errors.push(`no permessage-deflate offer (Sec-WebSocket-Extensions: ${JSON.stringify(offer)})`);
      else errors.push(...common.checkParams(offered, opts['expect-offer'], 'offer'));
    }
    const deflateOn = common.deflateParams(response) !== null;
    if (expectDeflate === 'on' && !deflateOn) {
      errors.push(`permessage-deflate not negotiated (offer ${JSON.stringify(offer)}, response ${JSON.stringify(response)})`);
    }
    if (expectDeflate === 'off' && deflateOn) {
      errors.push(`permessage-deflate negotiated but must not be (offer ${JSON.stringify(offer)}, response ${JSON.stringify(response)})`);
    }
    const socket = req.socket;
    const base = socket.bytesRead;
    const start = Date.now();
    const payloads = [];
    ws.on('message', (data, isBinary) => {
      const buf = Buffer.isBuffer(data) ? data : Buffer.concat(data);
      payloads.push(buf);
      ws.send(buf, { binary: isBinary });
    });
    ws.on('error', (e) => errors.push(`error: ${e.message}`));
    ws.on('close', (code, reason) => {
      const got = socket.bytesRead - base;
      common.log(`${payloads.length} messages echoed in ${(Date.now() - start) / 1000} s, ${got} bytes received`);
      if (deflateOn && !opts['no-wire-check'] && payloads.length) {
        const { budget, compressible } = common.wireBudget(payloads);
        common.log(`wire check: ${got} bytes received, budget ${budget} (${compressible} compressible)`);
        if (got > budget) {
          errors.push(
            `client messages not compressed: ${got} bytes on the wire for ${compressible} bytes ` +
              `of compressible payload (budget ${budget})`,
          );
        }
      }
      if (code !== 1000) errors.push(`client close code ${code} ${JSON.stringify(String(reason))}, expected 1000`);
      else common.log(`closed: client sent ${code} ${JSON.stringify(String(reason))}`);
      for (const e of errors) common.log(`FAIL: ${e}`);
      if (!errors.length) common.log('connection ok');
      if (opts.once) {
        wss.close();
        process.exit(errors.length ? 1 : 0);
      }
    });
  });
}

main();
