import pino from 'pino';
import { publish } from '../../core/events';
import { createRedis, waitReady } from '../../core/redis/client';
import { RedisServer } from '../../local/redis';
import { serviceConfigFromEnv } from '../../service/config';
import { RealtimeServer } from '../../service/realtime-server';
import { coreConfig, eventually, get, RawStream, SESSION_SECRET, TEST_NAMESPACES, uid } from '../support/harness';

const SERVER = { kind: 'server', principal: 'test-backend' } as const;

describe('Redis stopped and restarted under a running service', () => {
  let redisServer: RedisServer;
  let service: RealtimeServer;
  let base: string;
  const streams: RawStream[] = [];

  beforeAll(async () => {
    redisServer = await RedisServer.start();
    const config = serviceConfigFromEnv({
      REDIS_URL: redisServer.url,
      SESSION_SECRET,
      NAMESPACES_JSON: JSON.stringify(TEST_NAMESPACES),
      COOKIE_SECURE: 'false',
      LOG_LEVEL: 'silent',
    });
    service = new RealtimeServer(config, { logger: pino({ level: 'silent' }) });
    base = `http://127.0.0.1:${await service.listen(0, '127.0.0.1')}`;
  });
  afterAll(async () => {
    for (const s of streams) s.close();
    await service.close();
    await redisServer.destroy();
  });

  test('healthz 200 (liveness) with redis down, ?deep=1 503, clean JSON errors while down; streams kept; recovers and delivers what is published after', async () => {
    const redis = createRedis({ url: redisServer.url, name: 'test-publisher' });
    await waitReady(redis);
    const deps = { redis, config: coreConfig({ redisUrl: redisServer.url }) };
    const ch = `scores:${uid()}`;
    const s = new RawStream(`${base}/events?channels=${ch}`);
    streams.push(s);
    await s.until((x) => x.events().some((e) => e.event === 'ready'));
    const before = await publish({ channel: ch, type: 'update', data: 'before' }, SERVER, deps);
    await s.until((x) => x.text.includes(`"id":"${before.id}"`));

    await redisServer.stop();
    // Liveness stays 200 (an ALB check failing on Redis would replace every task at once); readiness says 503.
    await eventually(async () => (await get(`${base}/healthz?deep=1`)).status === 503, 10_000, 'healthz?deep=1 503');
    const health = await get(`${base}/healthz`);
    expect(health.status).toBe(200);
    expect(JSON.parse(health.body)).toMatchObject({ status: 'ok', redis: 'down', draining: false, connections: 1 });
    const deep = await get(`${base}/healthz?deep=1`);
    expect(JSON.parse(deep.body)).toMatchObject({ redis: 'down', error: { code: 'unavailable', message: expect.any(String) } });

    // Non-stream clients get a JSON 503 with Retry-After; an EventSource gets a 200 that tells it when to come back.
    const poll = await get(`${base}/poll?channels=${ch}&cursor=1`);
    expect(poll.status).toBe(503);
    expect(poll.headers['retry-after']).toBe('5');
    expect(JSON.parse(poll.body).error.code).toBe('unavailable');
    const ticketed = await get(`${base}/events?channels=chat:${uid()}&ticket=${'A'.repeat(43)}`);
    expect(ticketed.status).toBe(503);
    expect(JSON.parse(ticketed.body).error.code).toBe('unavailable');
    const es = new RawStream(`${base}/events?channels=${ch}`);
    streams.push(es);
    await es.until((x) => x.ended);
    expect(es.status).toBe(200);
    expect(es.text).toMatch(/^retry: \d+\n\n: unavailable/);
    // The existing stream is kept open meanwhile.
    expect(s.ended).toBe(false);
    await expect(publish({ channel: ch, type: 'update', data: 'lost' }, SERVER, deps)).rejects.toThrow();

    await redisServer.restart();
    await eventually(async () => (await get(`${base}/healthz?deep=1`)).status === 200, 15_000, 'healthz?deep=1 200');
    await waitReady(redis, 10_000);
    const after = await publish({ channel: ch, type: 'update', data: 'after' }, SERVER, deps);
    await s.until((x) => x.text.includes(`"id":"${after.id}"`), 10_000);
    expect(s.ended).toBe(false);
    // The stream saw everything that was ever accepted, once, in order (the publish during the outage failed loudly).
    expect(s.events().filter((e) => e.event === 'update').map((e) => JSON.parse(e.data).data)).toEqual(['before', 'after']);
    redis.disconnect();
  });
});
