'use strict';
/**
 * The WebSocket reference peer for `npm run bench -- --ws`: the minimal `ws` + ioredis server most
 * teams would write first. No auth, no ids, no history, no heartbeats: one Redis SUBSCRIBE to one
 * channel, and every message is sent with `ws.send(msg)` to every open socket (perMessageDeflate off).
 *
 * env: PORT (default 8091), HOST (default 127.0.0.1), REDIS_URL, CHANNEL (default "bench").
 */
const http = require('node:http');
const Redis = require('ioredis');
const { WebSocketServer } = require('ws');

const port = Number(process.env.PORT || 8091);
const host = process.env.HOST || '127.0.0.1';
const channel = process.env.CHANNEL || 'bench';

const sub = new Redis(process.env.REDIS_URL || 'redis://127.0.0.1:6379');
sub.on('error', () => undefined);

const server = http.createServer((req, res) => {
  res.writeHead(req.url === '/healthz' && sub.status === 'ready' ? 200 : 404, { 'content-type': 'text/plain' });
  res.end(sub.status);
});
const wss = new WebSocketServer({ server, perMessageDeflate: false });
wss.on('connection', (ws) => ws.on('error', () => undefined));
sub.on('message', (_ch, msg) => {
  for (const ws of wss.clients) ws.send(msg);
});

sub.subscribe(channel).then(() => {
  server.listen(port, host, () => process.stdout.write(`ws-ref listening on ${host}:${port}\n`));
});

const stop = () => {
  for (const ws of wss.clients) ws.terminate();
  server.close(() => process.exit(0));
  sub.disconnect();
  setTimeout(() => process.exit(0), 2000).unref();
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
