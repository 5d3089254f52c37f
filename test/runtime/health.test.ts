import pino from 'pino';
import { publish } from '../../core/events';
import { createRedis, waitReady } from '../../core/redis/client';
import { freePort, RedisServer } from '../../local/redis';
import { serviceConfigFromEnv } from '../../service/config';
import { RealtimeServer } from '../../service/realtime-server';
import { coreConfig, eventually, get, RawStream, SESSION_SECRET, TEST_NAMESPACES, uid } from '../support/harness';

const SERVER = { kind: 'server', principal: 'test-backend' } as const;

describe('/healthz is liveness; the service starts and serves without Redis', () => {
  const cleanup: (() => unknown)[] = [];
  afterAll(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  test('Redis unreachable at start: listens, /healthz 200 redis down, ?deep=1 503, streams told to retry; then Redis comes up and streams work', async () => {
    // Nothing listens on this port until the test starts a redis-server there.
    const port = await freePort();
    const redisUrl = `redis://127.0.0.1:${port}`;
    const config = serviceConfigFromEnv({
      REDIS_URL: redisUrl,
      SESSION_SECRET,
      NAMESPACES_JSON: JSON.stringify(TEST_NAMESPACES),
      COOKIE_SECURE: 'false',
      LOG_LEVEL: 'silent',
    });
    const service = new RealtimeServer(config, { logger: pino({ level: 'silent' }) });
    cleanup.push(() => service.close());
    const base = `http://127.0.0.1:${await service.listen(0, '127.0.0.1', 100)}`;

    const live = await get(`${base}/healthz`);
    expect(live.status).toBe(200);
    expect(JSON.parse(live.body)).toMatchObject({ status: 'ok', redis: 'down', draining: false, connections: 0 });
    const deep = await get(`${base}/healthz?deep=1`);
    expect(deep.status).toBe(503);
    expect(JSON.parse(deep.body)).toMatchObject({ redis: 'down', error: { code: 'unavailable' } });

    const ch = `scores:${uid()}`;
    // An EventSource gets 200 with a retry hint (a non-200 would end it for good); API clients a JSON 503.
    const es = new RawStream(`${base}/events?channels=${ch}`);
    cleanup.push(() => es.close());
    await es.until((x) => x.ended);
    expect(es.status).toBe(200);
    expect(es.text).toMatch(/^retry: \d+\n\n: unavailable/);
    const api = await get(`${base}/events?channels=${ch}`);
    expect(api.status).toBe(503);
    expect(api.headers['retry-after']).toBe('5');
    const poll = await get(`${base}/poll?channels=${ch}`);
    expect(poll.status).toBe(503);
    expect(JSON.parse(poll.body).error.code).toBe('unavailable');

    const redisServer = await RedisServer.start({ port });
    cleanup.push(() => redisServer.destroy());
    await eventually(async () => (await get(`${base}/healthz?deep=1`)).status === 200, 15_000, 'ready once Redis is up');
    expect(JSON.parse((await get(`${base}/healthz`)).body)).toMatchObject({ redis: 'up', draining: false });

    const s = new RawStream(`${base}/events?channels=${ch}`);
    cleanup.push(() => s.close());
    await s.until((x) => x.events().some((e) => e.event === 'ready'));
    const redis = createRedis({ url: redisUrl, name: 'test-publisher' });
    cleanup.push(() => redis.disconnect());
    await waitReady(redis);
    const p = await publish({ channel: ch, type: 'update', data: 'hello' }, SERVER, { redis, config: coreConfig({ redisUrl }) });
    await s.until((x) => x.text.includes(`"id":"${p.id}"`));
    expect(JSON.parse((await get(`${base}/healthz`)).body)).toMatchObject({ connections: 1 });
  });
});
