/**
 * What a hostile caller can send and what it gets back (issue 20, item 7): deeply nested data is a
 * 400, a presented ticket is spent whatever the request was, `/healthz` tells outsiders little and
 * costs Redis a bounded number of PINGs, an unknown namespace does not list the configured ones, and
 * a client that sends its headers slowly is cut off by HEADERS_TIMEOUT_MS.
 */
import { connect, type Socket } from 'node:net';
import type Redis from 'ioredis';
import pino from 'pino';
import { redeemTicket } from '../../core/tickets';
import { RedisServer } from '../../local/redis';
import type { LocalStack } from '../../local/stack';
import { serviceConfigFromEnv } from '../../service/config';
import { RealtimeServer } from '../../service/realtime-server';
import { connectRedis, coreConfig, get, RawStream, SESSION_SECRET, TEST_NAMESPACES, uid } from '../support/harness';
import { connectWs, upgradeStatus, type WsClient } from './ws-support';

process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';

let redisServer: RedisServer;
let redis: Redis;
let stack: LocalStack;
const cleanup: (() => unknown)[] = [];

beforeAll(async () => {
  redisServer = await RedisServer.start();
  redis = await connectRedis(redisServer.url);
  const { startLocalStack } = await import('../../local/stack');
  stack = await startLocalStack({
    redisUrl: redisServer.url,
    webSocketMode: 'both',
    logger: pino({ level: 'silent' }),
    env: { NAMESPACES_JSON: JSON.stringify(TEST_NAMESPACES), LOG_LEVEL: 'silent', WS_GONE_GRACE_MS: '0', POLL_TIMEOUT_MS: '1000' },
  });
});
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});
afterAll(async () => {
  await stack?.close();
  redis?.disconnect();
  await redisServer?.destroy();
});

const config = () => coreConfig({ redisUrl: redisServer.url });
const ticket = async (sub: string, channels: string[], transport: 'sse' | 'ws' = 'sse') => {
  const r = await fetch(stack.outputs.TicketUrl, { method: 'POST', headers: { 'content-type': 'application/json', 'x-local-user': sub }, body: JSON.stringify({ channels, transport }) });
  expect(r.status).toBe(201);
  return ((await r.json()) as { ticket: string }).ticket;
};
const errorOf = (r: { status: number; body: string }) => ({ status: r.status, code: (JSON.parse(r.body) as { error: { code: string } }).error.code });
/** JSON text nested `depth` arrays deep (JSON.parse takes it; JSON.stringify of it overflows the stack). */
const nested = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;
const ws = (c: WsClient) => {
  cleanup.push(() => c.close());
  return c;
};

describe('deeply nested data is a 400, not a 500', () => {
  const DEPTH = 4200;

  test('POST /publish', async () => {
    const body = `{"channel":"chat:${uid()}","type":"update","data":${nested(DEPTH)}}`;
    const r = await fetch(stack.outputs.PublishUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    expect({ status: r.status, code: ((await r.json()) as { error: { code: string } }).error.code }).toEqual({ status: 400, code: 'bad_request' });
  });

  test.each([
    ['the API Gateway WebSocket API', 'WebSocketUrl'],
    ['/live on the tasks', 'LiveUrl'],
  ] as const)('a publish frame on %s', async (_what, output) => {
    const ch = `chat:${uid()}`;
    const c = ws(await connectWs(`${stack.outputs[output]}?ticket=${await ticket('nester', [ch], 'ws')}`));
    const before = c.frames.length;
    c.send(`{"action":"publish","channel":"${ch}","type":"update","data":${nested(DEPTH)}}`);
    await c.until(() => c.frames.slice(before).some((f) => f.type === 'error'));
    expect(c.frames.slice(before).find((f) => f.type === 'error')).toMatchObject({ error: { code: 'bad_request' } });
    // The connection still works.
    expect(await c.request({ action: 'publish', channel: ch, type: 'update', data: [[1]] }, 'published')).toMatchObject({ type: 'published' });
  });
});

describe('a presented ticket is spent on every presentation', () => {
  const spent = async (t: string) => expect(redeemTicket(t, 'sse', { redis, config: config() })).rejects.toMatchObject({ code: 'ticket_invalid' });

  test.each([
    ['a bad cursor', (ch: string, t: string) => `${stack.outputs.SseUrl}?channels=${ch}&lastEventId=not-a-cursor&ticket=${t}`],
    ['a bad cursor on /poll', (ch: string, t: string) => `${stack.outputs.PollUrl}?channels=${ch}&cursor=-1&ticket=${t}`],
    ['a bad channel list', (ch: string, t: string) => `${stack.outputs.SseUrl}?channels=${ch},not%20a%20channel&ticket=${t}`],
    ['a channel list that is too long', (ch: string, t: string) => `${stack.outputs.SseUrl}?channels=${[ch, ...Array.from({ length: 16 }, (_, i) => `scores:${i}`)].join(',')}&ticket=${t}`],
    ['a wrong path', (_ch: string, t: string) => `${stack.outputs.SseUrl.replace(/\/events$/, '/nope')}?ticket=${t}`],
    ['public channels only', (_ch: string, t: string) => `${stack.outputs.PollUrl}?channels=scores:${uid()}&cursor=0&ticket=${t}`],
  ])('%s', async (_what, url) => {
    const ch = `chat:${uid()}`;
    const t = await ticket('presenter', [ch]);
    await get(url(ch, t));
    await spent(t);
  });

  test.each(['9999999999999999', 'not-a-cursor'])('a native EventSource with a ticket and the cursor %s: the ticket is spent and the stream resets its channels (200, reset, ready)', async (cursor) => {
    const ch = `chat:${uid()}`;
    const t = await ticket('presenter', [ch]);
    const s = new RawStream(`${stack.outputs.SseUrl}?channels=${ch}&ticket=${t}`, { 'last-event-id': cursor });
    cleanup.push(() => s.close());
    await s.until((x) => x.events().some((e) => e.event === 'ready'));
    expect(s.status).toBe(200);
    expect(s.events().filter((e) => e.event === 'reset').map((e) => JSON.parse(e.data).channel)).toEqual([ch]);
    await spent(t);
  });

  test('an upgrade on a wrong path', async () => {
    const t = await ticket('presenter', [`chat:${uid()}`], 'ws');
    expect(await upgradeStatus(`${stack.outputs.LiveUrl.replace(/\/live$/, '/nope')}?ticket=${t}`)).toBe(404);
    await expect(redeemTicket(t, 'ws', { redis, config: config() })).rejects.toMatchObject({ code: 'ticket_invalid' });
  });
});

test('an unknown namespace is named, the configured ones are not listed', async () => {
  const r = await get(`${stack.outputs.SseUrl}?channels=secretns:x`);
  expect(errorOf(r)).toEqual({ status: 400, code: 'invalid_channel' });
  expect(r.body).toContain('secretns');
  for (const ns of Object.keys(TEST_NAMESPACES)) expect(r.body).not.toContain(`${ns},`);
  expect(r.body).not.toMatch(/known:|nohist|tiny/);
});

describe('/healthz', () => {
  /** A service on a Redis of its own (its PING count is exact) with a clock the test moves. */
  async function service(): Promise<{ base: string; clock: { now: number }; pings: () => Promise<number> }> {
    const own = await RedisServer.start();
    const admin = await connectRedis(own.url);
    const clock = { now: 1_000_000 };
    const svc = new RealtimeServer(
      serviceConfigFromEnv({ REDIS_URL: own.url, SESSION_SECRET, NAMESPACES_JSON: JSON.stringify(TEST_NAMESPACES), COOKIE_SECURE: 'false', LOG_LEVEL: 'silent' }),
      { logger: pino({ level: 'silent' }), now: () => clock.now },
    );
    const port = await svc.listen(0, '127.0.0.1');
    cleanup.push(async () => {
      await svc.close();
      admin.disconnect();
      await own.destroy();
    });
    const pings = async () => Number(/cmdstat_ping:calls=(\d+)/.exec(await admin.info('commandstats'))?.[1] ?? 0);
    return { base: `http://127.0.0.1:${port}`, clock, pings };
  }

  test('through the load balancer (X-Forwarded-For) it says only ok; the health check (no X-Forwarded-For) gets the counts', async () => {
    const { base } = await service();
    const outside = await get(`${base}/healthz`, { 'x-forwarded-for': '203.0.113.7' });
    expect({ status: outside.status, body: JSON.parse(outside.body) }).toEqual({ status: 200, body: { status: 'ok' } });
    const deepOutside = await get(`${base}/healthz?deep=1`, { 'x-forwarded-for': '203.0.113.7' });
    expect({ status: deepOutside.status, body: JSON.parse(deepOutside.body) }).toEqual({ status: 200, body: { status: 'ok' } });
    const check = await get(`${base}/healthz`, { 'user-agent': 'ELB-HealthChecker/2.0' });
    expect(JSON.parse(check.body)).toEqual({ status: 'ok', redis: 'up', draining: false, connections: 0, polls: 0 });
  });

  test('deep checks cost at most one Redis PING per second, however many come', async () => {
    const { base, clock, pings } = await service();
    const before = await pings();
    const answers = await Promise.all(Array.from({ length: 20 }, () => get(`${base}/healthz?deep=1`)));
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(200));
    for (let i = 0; i < 5; i++) expect((await get(`${base}/healthz?deep=1`)).status).toBe(200);
    expect((await pings()) - before).toBe(1);
    clock.now += 1000;
    expect((await get(`${base}/healthz?deep=1`)).status).toBe(200);
    expect((await pings()) - before).toBe(2);
  });
});

describe('slow headers are cut off (HEADERS_TIMEOUT_MS)', () => {
  /** Opens a raw socket, sends the start of a request and never finishes its headers; resolves what the server answered when it closed. */
  function slowHeaders(port: number, path: string): { closed: Promise<string>; socket: Socket } {
    const socket = connect(port, '127.0.0.1');
    let got = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (got += d));
    socket.on('error', () => undefined);
    socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n`);
    // One more header line now and then, never the blank line that ends them.
    const drip = setInterval(() => socket.write(`x-drip-${uid()}: 1\r\n`), 100);
    const closed = new Promise<string>((resolve) => socket.on('close', () => {
      clearInterval(drip);
      resolve(got);
    }));
    cleanup.push(() => {
      clearInterval(drip);
      socket.destroy();
    });
    return { closed, socket };
  }

  test.each([
    ['a stream request', '/events?channels=scores:x'],
    ['a WebSocket upgrade', '/live?ticket=x'],
  ])('%s whose headers never end is answered 408 and closed', async (_what, path) => {
    const svc = new RealtimeServer(
      serviceConfigFromEnv({ REDIS_URL: redisServer.url, SESSION_SECRET, NAMESPACES_JSON: JSON.stringify(TEST_NAMESPACES), COOKIE_SECURE: 'false', LOG_LEVEL: 'silent', HEADERS_TIMEOUT_MS: '1000' }),
      { logger: pino({ level: 'silent' }) },
    );
    const port = await svc.listen(0, '127.0.0.1');
    cleanup.push(() => svc.close());
    const { closed } = slowHeaders(port, path);
    expect(await closed).toMatch(/^HTTP\/1\.1 408/);
    // A complete request on the same server is served.
    const s = new RawStream(`http://127.0.0.1:${port}/events?channels=scores:${uid()}`);
    cleanup.push(() => s.close());
    await s.until((x) => x.events().some((e) => e.event === 'ready'));
  });
});
