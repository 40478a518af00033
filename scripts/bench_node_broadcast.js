#!/usr/bin/env node
'use strict';
// Fan-out anchor for scripts/bench_fanout.py: a Node `ws` broadcast server, the way its
// documentation writes one. Every text and binary message goes to every other client.
// Compression off, as for every server in that benchmark.
//
//   NODE_PATH=<dir with node_modules/ws> node bench_node_broadcast.js PORT
const WebSocket = require('ws');

const port = Number(process.argv[2]);
const wss = new WebSocket.Server({
  host: '127.0.0.1',
  port,
  perMessageDeflate: false,
  maxPayload: 64 * 1024 * 1024,
});
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    for (const client of wss.clients) {
      if (client !== ws && client.readyState === WebSocket.OPEN) {
        client.send(data, { binary: isBinary });
      }
    }
  });
});
wss.on('listening', () => console.log(`listening ${port}`));
