import { createServer, get as httpGet, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type Redis from 'ioredis';
import { publish } from '../../core/events';
import type { RealtimeServer } from '../../service/realtime-server';
import { streamHead } from '../../service/sse-transport';
import { connectRedis, eventually, RawStream, startService, ticketFor, uid } from '../support/harness';

/**
 * A close-delimited stream (STREAM_FRAMING=close, the default) takes its socket over from node:http
 * once admitted (service/sse-transport.ts `takeOver`): the HTTP parser, the request and the response
 * are let go, and the stream still sees its peer leave, gets heartbeats, events and its ending.
 */

// A full GC on demand, for the collectability check (the flag can be set at run time; `gc` then exists in a new context).
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const SERVER = { kind: 'server', principal: 'test' } as const;

interface Seen {
  socket: Socket & { parser?: unknown; _httpMessage?: unknown };
  req: WeakRef<IncomingMessage>;
  res: WeakRef<ServerResponse>;
}

/** Records the server side of each request to /events (weakly for the request and response). */
function watch(service: RealtimeServer): Seen[] {
  const seen: Seen[] = [];
  service.server.prependListener('request', (req: IncomingMessage, res: ServerResponse) => {
    if (req.url?.startsWith('/events')) seen.push({ socket: req.socket, req: new WeakRef(req), res: new WeakRef(res) });
  });
  return seen;
}

describe('a close-delimited stream owns its socket after the head', () => {
  let redis: Redis;
  let service: RealtimeServer;
  let base: string;
  beforeAll(async () => {
    redis = await connectRedis();
    ({ service, base } = await startService({ HEARTBEAT_MS: '1000' }));
  });
  afterAll(async () => {
    await service.close();
    redis.disconnect();
  });

  test('node:http lets go: no parser, no response, none of its listeners on the socket; the request and response are collected', async () => {
    const seen = watch(service);
    const ch = `chat:${uid()}`;
    const s = new RawStream(`${base}/events?channels=${ch}&ticket=${await ticketFor(redis, 'ann', [ch])}`);
    try {
      await s.until((x) => x.events().some((e) => e.event === 'ready'));
      expect(s.status).toBe(200);
      expect(s.headers).toMatchObject({ 'content-type': 'text/event-stream; charset=utf-8', connection: 'close' });
      expect(s.headers['set-cookie']).toBeDefined();
      expect(s.headers['transfer-encoding']).toBeUndefined();
      const [{ socket, req, res }] = seen;
      expect(socket.parser).toBeNull();
      expect(socket._httpMessage).toBeNull();
      // Answered, to whoever holds the response (the head is the stream's own: streamHead).
      expect({ headersSent: res.deref()?.headersSent, statusCode: res.deref()?.statusCode }).toEqual({ headersSent: true, statusCode: 200 });
      expect(socket.listeners('data')).toEqual([]);
      expect(socket.listeners('close').map((f) => f.name)).not.toContain('bound socketOnClose');
      // WeakRefs hold their target until the end of the job that created or read them: GC in a later one.
      await new Promise((r) => setTimeout(r, 10));
      gc();
      await new Promise((r) => setTimeout(r, 10));
      gc();
      expect({ req: req.deref() === undefined, res: res.deref() === undefined }).toEqual({ req: true, res: true });
      // Still a stream: an event arrives.
      const p = await publish({ channel: ch, type: 'update', data: 1 }, SERVER, { redis, config: service.config.core });
      await s.until((x) => x.events().some((e) => e.id === p.id));
    } finally {
      s.close();
    }
  });

  test('the peer leaving is seen: the stream is released and its subscription dropped', async () => {
    // The stream of the last test is gone first.
    await eventually(() => service.connections === 0 && service.hub.channelCount === 0, 5000, 'no stream left');
    const seen = watch(service);
    const ch = `chat:${uid()}`;
    const before = service.connections;
    const channels = service.hub.channelCount;
    const s = new RawStream(`${base}/events?channels=${ch}&ticket=${await ticketFor(redis, 'bea', [ch])}`);
    await s.until((x) => x.events().some((e) => e.event === 'ready'));
    expect(seen[0].socket.parser).toBeNull();
    expect(service.connections).toBe(before + 1);
    expect(service.hub.channelCount).toBe(channels + 1);
    s.close();
    await eventually(() => service.connections === before && service.hub.channelCount === channels, 5000, 'the stream released');
    expect(seen[0].socket.destroyed).toBe(true);
  });

  test('heartbeats reach it, and a drain ends it with its reconnect hint and closes the connection', async () => {
    const { service: svc, base: b } = await startService({ HEARTBEAT_MS: '1000' });
    try {
      const seen = watch(svc);
      const ch = `chat:${uid()}`;
      const s = new RawStream(`${b}/events?channels=${ch}&ticket=${await ticketFor(redis, 'cy', [ch])}`);
      await s.until((x) => x.events().some((e) => e.event === 'ready'));
      expect(seen[0].socket.parser).toBeNull();
      await s.until((x) => x.text.includes(': hb\n\n'));
      await svc.drain(0);
      await s.until((x) => x.ended);
      expect(s.text).toMatch(/retry: \d+\n\n: draining; reconnect\n\n$/);
      await eventually(() => svc.connections === 0, 5000, 'the drained stream released');
    } finally {
      await svc.close();
    }
  });

  test('close() ends a taken-over stream whose reader stopped reading (node:http no longer lists it)', async () => {
    const { service: svc, base: b } = await startService();
    const seen = watch(svc);
    const s = new RawStream(`${b}/events?channels=scores:${uid()}`);
    await s.until((x) => x.events().some((e) => e.event === 'ready'));
    expect(seen[0].socket.parser).toBeNull();
    await svc.close();
    expect(seen[0].socket.destroyed).toBe(true);
    await eventually(() => svc.connections === 0, 5000, 'the stream released');
    s.close();
  });

  test('STREAM_FRAMING=chunked keeps the response (Node frames each write)', async () => {
    const { service: svc, base: b } = await startService({ STREAM_FRAMING: 'chunked' });
    try {
      const seen = watch(svc);
      const s = new RawStream(`${b}/events?channels=scores:${uid()}`);
      try {
        await s.until((x) => x.events().some((e) => e.event === 'ready'));
        expect(s.headers['transfer-encoding']).toBe('chunked');
        expect(seen[0].socket._httpMessage).toBe(seen[0].res.deref());
      } finally {
        s.close();
      }
    } finally {
      await svc.close();
    }
  });
});

describe('the head of a taken-over stream (streamHead)', () => {
  /** What node:http's writeHead(200, { ...headers, connection: 'close' }) builds, chunked encoding off. */
  async function nodeHead(headers: Record<string, string | string[]>): Promise<{ head?: string; error?: string }> {
    const server = createServer((_req, res) => {
      res.useChunkedEncodingByDefault = false;
      try {
        res.writeHead(200, { ...headers, connection: 'close' });
        done({ head: (res as unknown as { _header: string })._header });
      } catch (err) {
        done({ error: (err as { code?: string }).code });
      }
      res.destroy();
    });
    let done!: (r: { head?: string; error?: string }) => void;
    const result = new Promise<{ head?: string; error?: string }>((r) => (done = r));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    httpGet(`http://127.0.0.1:${(server.address() as { port: number }).port}/`).on('error', () => undefined);
    const out = await result;
    server.close();
    return out;
  }

  test("is node:http's head byte for byte: header lines in order, an array one line per value, connection, Date", async () => {
    const headers = {
      'access-control-allow-origin': 'https://app.example',
      'access-control-allow-credentials': 'true',
      vary: 'Origin',
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      'x-accel-buffering': 'no',
      'set-cookie': ['rt_0123456789abcdef=v2.x.y; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax', 'rt_fedcba9876543210=; Path=/; Max-Age=0'],
    };
    // Both within one second (their Date lines equal), else again.
    for (let i = 0; ; i++) {
      const ours = streamHead(headers);
      const node = await nodeHead(headers);
      if (ours?.slice(-31) === node.head?.slice(-31) || i === 2) {
        expect(ours).toBe(node.head);
        break;
      }
    }
  });

  test('a value node:http refuses (a control character) gets no head here: node:http builds it and throws, as before', async () => {
    const headers = { 'content-type': 'text/event-stream', 'set-cookie': ['a=1', 'b=\u0001'] };
    expect(streamHead(headers)).toBeUndefined();
    expect(await nodeHead(headers)).toEqual({ error: 'ERR_INVALID_CHAR' });
    expect(streamHead({ 'x-a': 'caf\u00e9' })).toBeDefined();
    expect((await nodeHead({ 'x-a': 'caf\u00e9' })).head).toBe(streamHead({ 'x-a': 'caf\u00e9' }));
  });

  test('a stream sends it with its first frames, on the wire as node:http would have', async () => {
    const redis = await connectRedis();
    const { service, base } = await startService();
    try {
      const ch = `chat:${uid()}`;
      const ticket = await ticketFor(redis, 'dee', [ch]);
      const port = Number(new URL(base).port);
      const raw = await new Promise<string>((resolve, reject) => {
        const sock = connect(port, '127.0.0.1', () => sock.write(`GET /events?channels=${ch}&ticket=${ticket} HTTP/1.1\r\nHost: x\r\nOrigin: http://allowed.example\r\nAccept: text/event-stream\r\n\r\n`));
        let text = '';
        sock.setEncoding('latin1');
        sock.on('data', (d: string) => {
          text += d;
          if (text.includes('event: ready')) {
            sock.destroy();
            resolve(text);
          }
        });
        sock.on('error', reject);
      });
      const head = raw.slice(0, raw.indexOf('\r\n\r\n') + 4);
      const cookies = [...head.matchAll(/^set-cookie: (.*)\r$/gm)].map((m) => m[1]);
      const again = streamHead({
        'access-control-allow-origin': 'http://allowed.example',
        'access-control-allow-credentials': 'true',
        vary: 'Origin',
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        'x-accel-buffering': 'no',
        'set-cookie': cookies,
      })!;
      expect(cookies).toHaveLength(1);
      expect(head.replace(/Date: .*\r\n/, '')).toBe(again.replace(/Date: .*\r\n/, ''));
      expect(raw.slice(head.length)).toMatch(/^retry: \d+\n\n/);
    } finally {
      await service.close();
      redis.disconnect();
    }
  });
});
