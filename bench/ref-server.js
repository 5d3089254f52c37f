'use strict';
/**
 * The reference peer for `npm run bench`: the minimal SSE server most teams would write first.
 * node:http + ioredis, no auth, no ids, no history, no heartbeats: one Redis SUBSCRIBE to one
 * channel, and every message is written as `data: <msg>\n\n` to every open response.
 *
 * env: PORT (default 8090), HOST (default 127.0.0.1), REDIS_URL, CHANNEL (default "bench").
 */
const http = require('node:http');
const Redis = require('ioredis');

const port = Number(process.env.PORT || 8090);
const host = process.env.HOST || '127.0.0.1';
const channel = process.env.CHANNEL || 'bench';
const clients = new Set();

const sub = new Redis(process.env.REDIS_URL || 'redis://127.0.0.1:6379');
sub.on('error', () => undefined);
sub.on('message', (_ch, msg) => {
  const frame = `data: ${msg}\n\n`;
  for (const res of clients) res.write(frame);
});

const server = http.createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(sub.status === 'ready' ? 200 : 503, { 'content-type': 'text/plain' });
    res.end(sub.status);
    return;
  }
  if (!req.url.startsWith('/events')) {
    res.writeHead(404);
    res.end();
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  res.write(': ok\n\n');
  clients.add(res);
  res.on('close', () => clients.delete(res));
});
server.keepAliveTimeout = 65_000;
server.requestTimeout = 0;

sub.subscribe(channel).then(() => {
  server.listen(port, host, () => process.stdout.write(`ref listening on ${host}:${port}\n`));
});

const stop = () => {
  for (const res of clients) res.destroy();
  server.close(() => process.exit(0));
  sub.disconnect();
  setTimeout(() => process.exit(0), 2000).unref();
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
