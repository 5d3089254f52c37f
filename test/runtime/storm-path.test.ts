import type Redis from 'ioredis';
import { publish } from '../../core/events';
import { createRedis, waitReady } from '../../core/redis/client';
import type { RealtimeServer } from '../../service/realtime-server';
import { connectRedis, coreConfig, RawStream, redisUrl, startService, ticketFor, uid } from '../support/harness';

/**
 * The reconnect storm's server side (issue 27, `npm run bench -- --storm`): what each resumed stream
 * costs in writes to Redis. On loopback each write is a system call whose delivery to redis-server
 * the kernel charges to the writer, the largest item of the storm's profile; commands of one loop
 * turn share one write when the command connection pipelines them.
 */

const SERVER = { kind: 'server', principal: 'test' } as const;
const config = coreConfig();

/** Counts the commands `redis` sends and the writes its socket makes from now on. */
function countWrites(redis: Redis): { commands: number; writes: number; stop(): void } {
  const c = { commands: 0, writes: 0, stop: () => undefined as void };
  const r = redis as unknown as { sendCommand: (...a: unknown[]) => unknown; stream: { write: (...a: unknown[]) => boolean } };
  const send = r.sendCommand;
  const stream = r.stream;
  const write = stream.write;
  r.sendCommand = function (this: unknown, ...a: unknown[]) {
    c.commands++;
    return send.apply(this, a);
  };
  stream.write = function (this: unknown, ...a: unknown[]) {
    c.writes++;
    return write.apply(this, a);
  };
  c.stop = () => {
    r.sendCommand = send;
    stream.write = write;
  };
  return c;
}

describe('commands of one loop turn, one write', () => {
  test.each([
    [true, 1],
    [false, 3],
  ])('autoPipelining %s: three GETs issued together take %i write(s), same answers', async (autoPipelining, writes) => {
    const redis = createRedis({ url: redisUrl(), name: 'test-pipelining', autoPipelining });
    try {
      await waitReady(redis);
      const k = `test:pipe:${uid()}`;
      await redis.set(`${k}:a`, '1');
      await redis.set(`${k}:b`, '2');
      const c = countWrites(redis);
      const got = await Promise.all([redis.get(`${k}:a`), redis.get(`${k}:b`), redis.get(`${k}:c`)]);
      c.stop();
      expect(got).toEqual(['1', '2', null]);
      expect(c.writes).toBe(writes);
    } finally {
      redis.disconnect();
    }
  });
});

describe('a resumed stream (ticket and Last-Event-ID), as in the storm', () => {
  let redis: Redis;
  let service: RealtimeServer;
  let base: string;
  beforeAll(async () => {
    redis = await connectRedis();
    ({ service, base } = await startService());
  });
  afterAll(async () => {
    await service.close();
    redis.disconnect();
  });

  test('gets what it missed, in order, and its commands to Redis go out in fewer writes than commands', async () => {
    const ch = `chat:${uid()}`;
    const seen = await publish({ channel: ch, type: 'x', data: 0 }, SERVER, { redis, config });
    const missed: string[] = [];
    for (let i = 1; i <= 3; i++) missed.push((await publish({ channel: ch, type: 'x', data: i }, SERVER, { redis, config })).id);
    const ticket = await ticketFor(redis, `u-${uid()}`, [ch]);
    const c = countWrites(service.redis);
    const s = new RawStream(`${base}/events?channels=${encodeURIComponent(ch)}&ticket=${ticket}`, { 'last-event-id': seen.id });
    try {
      await s.until((x) => x.events().some((e) => e.event === 'ready'));
      c.stop();
      const ids = s.events().filter((e) => e.event !== 'ready' && e.id !== undefined && JSON.parse(e.data).channel === ch).map((e) => JSON.parse(e.data).id as string);
      expect(ids).toEqual(missed);
      // The ticket's redemption reads the user's revocation epoch and the position together: one write for both.
      expect(c.commands).toBeGreaterThanOrEqual(3);
      expect(c.writes).toBeLessThan(c.commands);
    } finally {
      s.close();
    }
  });
});
