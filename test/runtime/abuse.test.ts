import type Redis from 'ioredis';
import pino from 'pino';
import { decodeCursor } from '../../core/cursor';
import { publish } from '../../core/events';
import { Keys } from '../../core/redis/keys';
import { serviceConfigFromEnv } from '../../service/config';
import { RealtimeServer, type RealtimeServerDeps } from '../../service/realtime-server';
import { coreConfig, eventually, get, RawStream, redisUrl, SESSION_SECRET, TEST_NAMESPACES, ticketFor, uid, useRedis } from '../support/harness';

const SERVER = { kind: 'server', principal: 'test-backend' } as const;
/** A public namespace with a long history, for replays bigger than one page. */
const NAMESPACES = { ...TEST_NAMESPACES, big: { subscribe: 'public', publish: 'server', historySize: 500, historyTtlSeconds: 600 } } as const;
const config = coreConfig({ namespaces: NAMESPACES });
let redis: Redis;
const cleanup = useRedis((r) => (redis = r));

const pub = (channel: string, data: unknown) => publish({ channel, type: 'update', data }, SERVER, { redis, config });
const ready = (s: RawStream) => s.events().some((e) => e.event === 'ready');
const numsub = async (channel: string) => Number(((await redis.pubsub('NUMSUB', new Keys('rt:').live(channel))) as [string, number])[1]);

async function service(env: Record<string, string> = {}, deps: RealtimeServerDeps = {}): Promise<{ service: RealtimeServer; base: string }> {
  const svc = new RealtimeServer(
    serviceConfigFromEnv({
      REDIS_URL: redisUrl(),
      SESSION_SECRET,
      NAMESPACES_JSON: JSON.stringify(NAMESPACES),
      COOKIE_SECURE: 'false',
      ALLOWED_ORIGINS: 'http://allowed.example',
      LOG_LEVEL: 'silent',
      ...env,
    }),
    { logger: pino({ level: 'silent' }), ...deps },
  );
  const port = await svc.listen(0, '127.0.0.1');
  cleanup.push(() => svc.close());
  return { service: svc, base: `http://127.0.0.1:${port}` };
}
function stream(url: string, headers: Record<string, string> = {}): RawStream {
  const s = new RawStream(url, headers);
  cleanup.push(() => s.close());
  return s;
}

describe('anonymous long polls count toward MAX_CONNECTIONS', () => {
  test('two waiting polls fill a cap of 2: a third poll gets 503, a stream 200 + retry (EventSource) or 503 (API)', async () => {
    const { base } = await service({ MAX_CONNECTIONS: '2', POLL_TIMEOUT_MS: '60000' });
    const [a, b, c] = [uid(), uid(), uid()].map((x) => `scores:${x}`);
    const waiting = [get(`${base}/poll?channels=${a}`), get(`${base}/poll?channels=${b}`)];
    await eventually(async () => (await numsub(a)) === 1 && (await numsub(b)) === 1, 10_000, 'two polls waiting');
    const third = await get(`${base}/poll?channels=${c}`);
    expect(third.status).toBe(503);
    expect(third.headers['retry-after']).toBe('5');
    expect(JSON.parse(third.body).error.code).toBe('unavailable');
    expect(await numsub(c)).toBe(0);
    expect((await get(`${base}/events?channels=${c}`)).status).toBe(503);
    const es = stream(`${base}/events?channels=${c}`);
    await es.until((x) => x.ended);
    expect(es.status).toBe(200);
    expect(es.text).toMatch(/^retry: \d+\n\n: unavailable/);
    // The waiting polls are answered when an event comes, and free their places.
    const e = await pub(a, 1);
    await pub(b, 2);
    expect((await Promise.all(waiting)).map((r) => r.status)).toEqual([200, 200]);
    const again = await get(`${base}/poll?channels=${a}&cursor=${Number(e.id) - 1}`);
    expect(again.status).toBe(200);
  });
});

describe('per-IP limit on requests without a ticket or cookie', () => {
  test('ANON_REQUESTS_PER_MINUTE=3 with an injected clock: the 4th gets 429 + Retry-After (an EventSource 200 + retry:), ticketed requests and the next window pass', async () => {
    // A whole minute near the real time (tickets are issued on the real clock): the window ends 60 s later.
    let clock = Math.ceil(Date.now() / 60_000) * 60_000;
    const { base } = await service({ ANON_REQUESTS_PER_MINUTE: '3', TRUST_PROXY_HOPS: '1' }, { now: () => clock });
    const ch = `scores:${uid()}`;
    const first = await pub(ch, 0);
    const cursor = Number(first.id) - 1;
    const poll = (headers: Record<string, string> = {}) => get(`${base}/poll?channels=${ch}&cursor=${cursor}`, headers);
    // Behind one trusted proxy the client is the right-most X-Forwarded-For entry; what is left of it is forgeable.
    const client = { 'x-forwarded-for': '203.0.113.7' };
    for (let i = 0; i < 3; i++) expect((await poll({ 'x-forwarded-for': `198.51.100.${i}, 203.0.113.7` })).status).toBe(200);
    clock += 15_000;
    const limited = await poll(client);
    expect(limited.status).toBe(429);
    expect(JSON.parse(limited.body).error.code).toBe('rate_limited');
    expect(limited.headers['retry-after']).toBe('45');
    const es = stream(`${base}/events?channels=${ch}`, client);
    await es.until((x) => x.ended);
    expect(es.status).toBe(200);
    expect(es.text).toMatch(/^retry: \d+\n\n: rate_limited/);
    expect(Number(/^retry: (\d+)/.exec(es.text)![1])).toBeGreaterThanOrEqual(45_000);
    // Another client (and the socket address when no proxy header came) has its own budget.
    expect((await poll({ 'x-forwarded-for': '203.0.113.8' })).status).toBe(200);
    expect((await poll()).status).toBe(200);
    // Requests with a ticket are not anonymous.
    const chat = `chat:${uid()}`;
    const p = await pub(chat, 'x');
    const ticketed = await get(`${base}/poll?channels=${chat}&cursor=${Number(p.id) - 1}&ticket=${await ticketFor(redis, 'u1', [chat])}`, client);
    expect(ticketed.status).toBe(200);
    clock += 45_000;
    expect((await poll(client)).status).toBe(200);
  });
});

describe('replays are bounded', () => {
  test('a long poll returns at most REPLAY_MAX_EVENTS with "more": true and the cursor at the last one; polling on gets the rest', async () => {
    const { base } = await service({ REPLAY_MAX_EVENTS: '10' });
    const ch = `big:${uid()}`;
    const a = `big:${uid()}`;
    const start = Number((await pub(ch, 'first')).id) - 1;
    const sent: string[] = [];
    for (let i = 0; i < 24; i++) sent.push((await pub(i % 2 ? ch : a, i)).id);
    sent.unshift(String(start + 1));
    let cursor = String(start);
    const got: string[] = [];
    const pages: boolean[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await get(`${base}/poll?channels=${ch},${a}&cursor=${cursor}`);
      expect(r.status).toBe(200);
      const body = JSON.parse(r.body) as { events: { id: string }[]; cursor: string; more?: boolean };
      got.push(...body.events.map((e) => e.id));
      pages.push(body.more === true);
      if (body.events.length) expect(decodeCursor(body.cursor, 2).positions).toContain(Number(body.events[body.events.length - 1].id));
      cursor = body.cursor;
    }
    expect(pages).toEqual([true, true, false]);
    expect(got).toEqual(sent);
  });

  test('a stream replay bigger than MAX_QUEUED_BYTES is written page by page to a reader that keeps up: all of it, in order, no slow-consumer drop', async () => {
    const { service: svc, base } = await service({ REPLAY_MAX_EVENTS: '2', MAX_QUEUED_BYTES: '65536' });
    const ch = `big:${uid()}`;
    const payload = 'y'.repeat(30_000);
    const sent: string[] = [];
    for (let i = 0; i < 200; i++) sent.push((await pub(ch, payload)).id);
    const s = stream(`${base}/events?channels=${ch}&lastEventId=${Number(sent[0]) - 1}`);
    await s.until((x) => ready(x) || x.ended, 30_000);
    expect(svc.metrics.slowConsumerDrops).toBe(0);
    expect(s.events().filter((e) => e.event === 'update').map((e) => e.id)).toEqual(sent);
  });
});

describe('Redis subscriptions per task are bounded', () => {
  test('MAX_CHANNELS_PER_TASK=3: a request needing a 4th channel gets 503 (EventSource 200 + retry:); known channels still open', async () => {
    const { service: svc, base } = await service({ MAX_CHANNELS_PER_TASK: '3' });
    const [a, b, c, d] = [uid(), uid(), uid(), uid()].map((x) => `scores:${x}`);
    await Promise.all([stream(`${base}/events?channels=${a},${b}`), stream(`${base}/events?channels=${c}`)].map((s) => s.until(ready)));
    expect(svc.hub.channelCount).toBe(3);
    const api = await get(`${base}/events?channels=${a},${d}`);
    expect(api.status).toBe(503);
    expect(api.headers['retry-after']).toBe('5');
    expect(JSON.parse(api.body).error.code).toBe('unavailable');
    const es = stream(`${base}/events?channels=${d}`);
    await es.until((x) => x.ended);
    expect(es.status).toBe(200);
    expect(es.text).toMatch(/^retry: \d+\n\n: unavailable/);
    const poll = await get(`${base}/poll?channels=${d}`);
    expect(poll.status).toBe(503);
    expect(await numsub(d)).toBe(0);
    expect(svc.hub.channelCount).toBe(3);
    await stream(`${base}/events?channels=${a},${c}`).until(ready);
  });
});
