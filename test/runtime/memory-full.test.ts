import type Redis from 'ioredis';
import { toRealtimeError } from '../../core/errors';
import { publish } from '../../core/events';
import { issueTicket, redeemTicket } from '../../core/tickets';
import { RedisServer } from '../../local/redis';
import { channelRecord, holdChannelTtls } from '../support/channel-keys';
import { connectRedis, coreConfig, eventually, TEST_NAMESPACES, uid } from '../support/harness';
import { Keys } from '../../core/redis/keys';

/** The default prefix's key names (hash-tagged: see core/redis/keys.ts). */
const K = new Keys('rt:');

/**
 * ElastiCache runs with `maxmemory-policy noeviction` (lib/redis-pub-sub.ts): when memory is full,
 * writes that need memory fail with OOM instead of evicting tickets, connections or history. Those
 * failures must reach callers as a retryable 503 `unavailable`, never as a 500, and what was stored
 * before must still be served. A private redis-server is filled for real.
 */
let server: RedisServer;
let redis: Redis;
const config = () => coreConfig({ redisUrl: server.url });
beforeAll(async () => {
  server = await RedisServer.start();
  redis = await connectRedis(server.url);
});
afterAll(async () => {
  redis.disconnect();
  await server.stop();
});

test('a full Redis with noeviction: publish and ticket issue answer 503 unavailable (nothing written), earlier tickets and history are kept and served', async () => {
  const deps = { redis, config: config() };
  const ch = `chat:${uid()}`;
  const before = await publish({ channel: ch, type: 'message', data: 'kept' }, { kind: 'server', principal: 'test' }, deps);
  const early = await issueTicket({ identity: { kind: 'user', sub: 'alice' }, channels: [ch] }, deps);
  // The channel as the refused publish must leave it: position, base, horizon, last id, history, no TTL refreshed
  // (a script's writes are not rolled back when a later command in it meets OOM).
  await holdChannelTtls(redis, 'rt:', ch);
  const state = await channelRecord(redis, 'rt:', TEST_NAMESPACES, ch);

  // Full: the limit below what is in use (noeviction keeps everything; writes that need memory fail).
  const used = Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1]);
  await redis.config('SET', 'maxmemory-policy', 'noeviction');
  await redis.config('SET', 'maxmemory', String(used - 64 * 1024));
  await expect(redis.set('fill', 'x')).rejects.toThrow(/^OOM/);

  // What every edge (HTTP handlers, WebSocket frames, the SSE service) answers: toRealtimeError of the failure.
  const wire = (p: Promise<unknown>) => p.then(() => 'resolved', (err: unknown) => toRealtimeError(err));
  expect(await wire(publish({ channel: ch, type: 'message', data: 'refused' }, { kind: 'server', principal: 'test' }, deps))).toMatchObject({
    code: 'unavailable',
    status: 503,
    message: expect.stringContaining('out of memory'),
  });
  expect(await channelRecord(redis, 'rt:', TEST_NAMESPACES, ch)).toEqual(state);
  expect(await redis.xlen(K.history(ch))).toBe(1);

  expect(await wire(issueTicket({ identity: { kind: 'user', sub: 'bob' }, channels: [ch] }, deps))).toMatchObject({ code: 'unavailable' });

  // Nothing was evicted: the ticket issued before still redeems (GETDEL frees memory, it is allowed when full).
  await expect(redeemTicket(early.ticket, 'sse', deps)).resolves.toMatchObject({ sub: 'alice' });
  expect((await redis.xrange(K.history(ch), '-', '+')).map((e) => e[0])).toEqual([`${before.id}-0`]);
});

describe('revoke while Redis is full (noeviction OOM)', () => {
  test('POST /revoke answers 202; the user\'s SSE stream, long poll, API Gateway and /live sockets end; a cookie reconnect and an earlier ticket are refused', async () => {
    process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
    const { startLocalStack } = await import('../../local/stack');
    const pino = (await import('pino')).default;
    const { RawStream, get, TEST_NAMESPACES } = await import('../support/harness');
    const { connectWs } = await import('./ws-support');
    const own = await RedisServer.start();
    const r = await connectRedis(own.url);
    const stack = await startLocalStack({
      redisUrl: own.url,
      webSocketMode: 'both',
      logger: pino({ level: 'silent' }),
      env: { NAMESPACES_JSON: JSON.stringify(TEST_NAMESPACES), WS_GONE_GRACE_MS: '0', RETRY_MS: '300', POLL_TIMEOUT_MS: '20000', LOG_LEVEL: 'silent' },
    });
    const closers: (() => unknown)[] = [];
    try {
      const ticket = async (sub: string, channels: string[], transport: 'sse' | 'ws' = 'sse') => {
        const res = await fetch(stack.outputs.TicketUrl, { method: 'POST', headers: { 'content-type': 'application/json', 'x-local-user': sub }, body: JSON.stringify({ channels, transport }) });
        expect(res.status).toBe(201);
        return ((await res.json()) as { ticket: string }).ticket;
      };
      const sub = `oom-${uid()}`;
      const ch = `chat:${uid()}`;
      const sseTicket = await ticket(sub, [ch]);
      const s = new RawStream(`${stack.outputs.SseUrl}?channels=${ch}&ticket=${sseTicket}`);
      closers.push(() => s.close());
      await s.until((x) => x.events().some((e) => e.event === 'ready'));
      const cookie = String((s.headers['set-cookie'] as string[])[0]).split(';')[0];
      const cursor = s.events()[0].cursor!;
      const poll = get(`${stack.outputs.PollUrl}?channels=${ch}&cursor=${cursor}&ticket=${await ticket(sub, [ch])}`);
      const gw = await connectWs(`${stack.outputs.WebSocketUrl}?ticket=${await ticket(sub, [ch], 'ws')}`);
      closers.push(() => gw.close());
      const live = await connectWs(`${stack.outputs.LiveUrl}?ticket=${await ticket(sub, [ch], 'ws')}`);
      closers.push(() => live.close());
      const unspent = await ticket(sub, [ch]);
      // The poll is waiting and the /live socket is registered before Redis fills up.
      await eventually(() => stack.sse.polls === 1 && stack.sse.sockets === 1, 5000, 'poll and /live socket open');

      const used = Number(/used_memory:(\d+)/.exec(await r.info('memory'))![1]);
      await r.config('SET', 'maxmemory-policy', 'noeviction');
      await r.config('SET', 'maxmemory', String(used - 64 * 1024));
      await expect(r.set('fill', 'x')).rejects.toThrow(/^OOM/);

      const res = await fetch(stack.outputs.TicketUrl.replace(/\/tickets$/, '/revoke'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sub }) });
      expect({ status: res.status, body: await res.json() }).toEqual({ status: 202, body: { sub, epoch: expect.any(Number) } });

      await s.until((x) => x.ended, 5000);
      const polled = await poll;
      expect({ status: polled.status, code: (JSON.parse(polled.body) as { error: { code: string } }).error.code }).toEqual({ status: 401, code: 'unauthorized' });
      expect(await gw.closed).toBe(1000);
      await live.closed;
      // Still full: what the user held is refused.
      await expect(r.set('fill', 'x')).rejects.toThrow(/^OOM/);
      const again = await get(`${stack.outputs.SseUrl}?channels=${ch}&ticket=${sseTicket}`, { cookie });
      expect({ status: again.status, code: (JSON.parse(again.body) as { error: { code: string } }).error.code }).toEqual({ status: 401, code: 'unauthorized' });
      const early = await get(`${stack.outputs.SseUrl}?channels=${ch}&ticket=${unspent}`);
      expect({ status: early.status, code: (JSON.parse(early.body) as { error: { code: string } }).error.code }).toEqual({ status: 401, code: 'unauthorized' });
    } finally {
      for (const c of closers) c();
      await stack.close();
      r.disconnect();
      await own.stop();
    }
  });
});
