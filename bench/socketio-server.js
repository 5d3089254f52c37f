'use strict';
/**
 * The Socket.IO peer for `npm run bench -- --ws`: Socket.IO 4 with @socket.io/redis-adapter, the
 * usual way to run it on several nodes. Clients connect over the WebSocket transport to the main
 * namespace and join the room CHANNEL; the bench publishes from another Socket.IO server (no
 * clients) on the same adapter with `io.to(CHANNEL).emit('m', data)`, so every event crosses Redis
 * the way it does between nodes. No auth, ids or history. perMessageDeflate off (Socket.IO's default).
 *
 * env: PORT (default 8092), HOST (default 127.0.0.1), REDIS_URL, CHANNEL (default "bench").
 */
const http = require('node:http');
const Redis = require('ioredis');
const { Server } = require('socket.io');
const { createAdapter } = require('@socket.io/redis-adapter');

const port = Number(process.env.PORT || 8092);
const host = process.env.HOST || '127.0.0.1';
const channel = process.env.CHANNEL || 'bench';
const url = process.env.REDIS_URL || 'redis://127.0.0.1:6379';

const pub = new Redis(url);
const sub = new Redis(url);
pub.on('error', () => undefined);
sub.on('error', () => undefined);

const server = http.createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(sub.status === 'ready' ? 200 : 503, { 'content-type': 'text/plain' });
    res.end(sub.status);
  }
});
const io = new Server(server, { transports: ['websocket'], serveClient: false, adapter: createAdapter(pub, sub) });
io.on('connection', (socket) => socket.join(channel));

server.listen(port, host, () => process.stdout.write(`socket.io listening on ${host}:${port}\n`));

const stop = () => {
  io.close(() => process.exit(0));
  pub.disconnect();
  sub.disconnect();
  setTimeout(() => process.exit(0), 2000).unref();
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
