'use strict';
/**
 * The floor probe for `npm run bench` (issue 27): the least work a Node process can do to deliver an
 * event to every stream, so that our figures can be stated as ratios to it on any machine.
 *
 * node:net, no HTTP library: the request head is read up to its blank line, answered with a fixed
 * response head (no chunked encoding: the body runs until the socket closes), and the socket joins a
 * set. One Redis SUBSCRIBE (ioredis, as `ref` and as our service get their events), and each message
 * is framed once (`data: <msg>\n\n`, one Buffer) and that same Buffer written to each socket once.
 * No tickets, no ids, no history, no heartbeats, no batching.
 *
 * env: PORT (default 8091), HOST (default 127.0.0.1), REDIS_URL, CHANNEL (default "bench").
 */
const net = require('node:net');
const Redis = require('ioredis');

const port = Number(process.env.PORT || 8091);
const host = process.env.HOST || '127.0.0.1';
const channel = process.env.CHANNEL || 'bench';
/** Open streams; an array (not a Set) so the fan-out loop is a plain indexed loop. */
let streams = [];
let closed = 0;

const HEAD = Buffer.from('HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n: ok\n\n', 'latin1');
const headResponse = (status, body) =>
  Buffer.from(`HTTP/1.1 ${status}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`, 'latin1');

const sub = new Redis(process.env.REDIS_URL || 'redis://127.0.0.1:6379');
sub.on('error', () => undefined);
sub.on('messageBuffer', (_ch, msg) => {
  if (closed > 1024) compact();
  const frame = Buffer.concat([Buffer.from('data: '), msg, Buffer.from('\n\n')]);
  for (let i = 0; i < streams.length; i++) {
    const s = streams[i];
    if (s !== null) s.write(frame);
  }
});

function compact() {
  streams = streams.filter((s) => s !== null);
  for (let i = 0; i < streams.length; i++) streams[i].probeIndex = i;
  closed = 0;
}

const server = net.createServer((sock) => {
  sock.setNoDelay(true);
  let head = '';
  const onData = (chunk) => {
    head += chunk.toString('latin1');
    const end = head.indexOf('\r\n\r\n');
    if (end < 0) {
      if (head.length > 8192) sock.destroy();
      return;
    }
    sock.off('data', onData);
    const path = head.slice(head.indexOf(' ') + 1, head.indexOf(' ', head.indexOf(' ') + 1));
    if (path === '/healthz') {
      sock.end(headResponse(sub.status === 'ready' ? '200 OK' : '503 Service Unavailable', sub.status));
      return;
    }
    if (!path.startsWith('/events')) {
      sock.end(headResponse('404 Not Found', ''));
      return;
    }
    sock.write(HEAD);
    sock.probeIndex = streams.length;
    streams.push(sock);
    sock.resume();
    sock.on('close', () => {
      streams[sock.probeIndex] = null;
      closed++;
    });
  };
  sock.on('data', onData);
  sock.on('error', () => undefined);
});

sub.subscribe(channel).then(() => {
  server.listen({ port, host, backlog: 4096 }, () => process.stdout.write(`probe listening on ${host}:${port}\n`));
});

const stop = () => {
  for (const s of streams) if (s) s.destroy();
  server.close(() => process.exit(0));
  sub.disconnect();
  setTimeout(() => process.exit(0), 2000).unref();
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
