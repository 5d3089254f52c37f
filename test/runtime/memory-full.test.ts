import type Redis from 'ioredis';
import { toRealtimeError } from '../../core/errors';
import { publish } from '../../core/events';
import { issueTicket, redeemTicket } from '../../core/tickets';
import { RedisServer } from '../../local/redis';
import { connectRedis, coreConfig, uid } from '../support/harness';

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

  // Full: the limit below what is in use (noeviction keeps everything; writes that need memory fail).
  const used = Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1]);
  await redis.config('SET', 'maxmemory-policy', 'noeviction');
  await redis.config('SET', 'maxmemory', String(used - 64 * 1024));
  await expect(redis.set('fill', 'x')).rejects.toThrow(/^OOM/);

  const seqBefore = await redis.get('rt:seq');
  // What every edge (HTTP handlers, WebSocket frames, the SSE service) answers: toRealtimeError of the failure.
  const wire = (p: Promise<unknown>) => p.then(() => 'resolved', (err: unknown) => toRealtimeError(err));
  expect(await wire(publish({ channel: ch, type: 'message', data: 'refused' }, { kind: 'server', principal: 'test' }, deps))).toMatchObject({
    code: 'unavailable',
    status: 503,
    message: expect.stringContaining('out of memory'),
  });
  expect(await redis.get('rt:seq')).toBe(seqBefore);
  expect(await redis.xlen(`rt:h:${ch}`)).toBe(1);

  expect(await wire(issueTicket({ identity: { kind: 'user', sub: 'bob' }, channels: [ch] }, deps))).toMatchObject({ code: 'unavailable' });

  // Nothing was evicted: the ticket issued before still redeems (GETDEL frees memory, it is allowed when full).
  await expect(redeemTicket(early.ticket, 'sse', deps)).resolves.toMatchObject({ sub: 'alice' });
  expect((await redis.xrange(`rt:h:${ch}`, '-', '+')).map((e) => e[0])).toEqual([`${before.id}-0`]);
});
