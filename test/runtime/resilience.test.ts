import { connect } from 'node:net';
import { EventSource } from 'eventsource';
import type Redis from 'ioredis';
import { publish } from '../../core/events';
import { FlushWindow, type Flushable } from '../../service/flush-window';
import type { RealtimeServer, RealtimeServerDeps } from '../../service/realtime-server';
import { cookieFetch, coreConfig, eventually, get, RawStream, spawnTask, startService, ticketFor, uid, useRedis } from '../support/harness';
import { WsClient } from './ws-support';

const SERVER = { kind: 'server', principal: 'test-backend' } as const;
const config = coreConfig();
let redis: Redis;
const cleanup = useRedis((r) => (redis = r));

const pub = (channel: string, data: unknown) => publish({ channel, type: 'update', data }, SERVER, { redis, config });
const ready = (s: RawStream) => s.events().some((e) => e.event === 'ready');
const ids = (s: RawStream) => s.events().filter((e) => e.event === 'update').map((e) => e.id!);
async function service(env: Record<string, string> = {}, deps: Omit<RealtimeServerDeps, 'logger'> = {}): Promise<{ service: RealtimeServer; base: string }> {
  const s = await startService(env, deps);
  cleanup.push(() => s.service.close());
  return s;
}
function stream(url: string, headers: Record<string, string> = {}): RawStream {
  const s = new RawStream(url, headers);
  cleanup.push(() => s.close());
  return s;
}

describe('slow consumers', () => {
  test('a reader that stops reading is closed once its backlog passes the cap; others get everything', async () => {
    const { service: svc, base } = await service({ MAX_QUEUED_BYTES: '65536' });
    const ch = `scores:${uid()}`;
    const healthy = stream(`${base}/events?channels=${ch}`);
    await healthy.until(ready);
    // A raw client that sends its request and never reads a byte.
    const port = Number(new URL(base).port);
    const stalled = connect(port, '127.0.0.1');
    cleanup.push(() => stalled.destroy());
    stalled.on('error', () => undefined);
    stalled.write(`GET /events?channels=${ch} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`);
    stalled.pause();
    await eventually(() => svc.connections === 2, 5000, 'both streams open');

    const payload = 'x'.repeat(30_000);
    const sent: string[] = [];
    // Loopback socket buffers absorb a few MB first; publish until the cap trips (bounded at 60 MB).
    for (let batch = 0; batch < 40 && svc.metrics.slowConsumerDrops === 0; batch++) {
      for (let i = 0; i < 50; i++) sent.push((await pub(ch, payload)).id);
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(svc.metrics.slowConsumerDrops).toBe(1);
    await eventually(() => svc.connections === 1, 5000, 'slow stream removed');
    const sockets = () => new Promise<number>((resolve) => svc.server.getConnections((_e, n) => resolve(n)));
    await eventually(async () => (await sockets()) === 1, 5000, 'slow socket freed');
    await healthy.until((x) => ids(x).length === sent.length, 30_000);
    expect(ids(healthy)).toEqual(sent);
  });
});

describe('limits', () => {
  test('per-task connection cap: API clients get 503 + Retry-After, an EventSource gets 200 with a retry hint', async () => {
    const { service: svc, base } = await service({ MAX_CONNECTIONS: '2' });
    const ch = `scores:${uid()}`;
    await Promise.all([stream(`${base}/events?channels=${ch}`), stream(`${base}/events?channels=${ch}`)].map((s) => s.until(ready)));
    const api = await get(`${base}/events?channels=${ch}`);
    expect(api.status).toBe(503);
    expect(api.headers['retry-after']).toBe('5');
    expect(JSON.parse(api.body).error.code).toBe('unavailable');
    const es = stream(`${base}/events?channels=${ch}`);
    await es.until((x) => x.ended);
    expect(es.status).toBe(200);
    expect(es.text).toMatch(/^retry: \d+\n\n: unavailable/);
    expect(svc.metrics.rejectedConnections).toBe(2);
  });

  test('write batching window: events still arrive complete and in order', async () => {
    const { base } = await service({ WRITE_DELAY_MS: '50' });
    const ch = `scores:${uid()}`;
    const s = stream(`${base}/events?channels=${ch}`);
    await s.until(ready);
    const sent = await Promise.all(Array.from({ length: 30 }, (_, i) => pub(ch, i)));
    await s.until((x) => ids(x).length === 30);
    expect(ids(s)).toEqual(sent.map((p) => p.id).sort((a, b) => Number(a) - Number(b)));
  });
});

describe('adaptive write window (the default: LATENCY_BUDGET_MS=100, MAX_WRITE_DELAY_MS=100)', () => {
  /**
   * Streams on two channels and sockets on `/live`, a publisher firing batches of events: each
   * connection gets every event of its channel once, in order.
   */
  async function orderAndNoLoss(base: string, during?: () => void): Promise<void> {
    const chs = [`scores:${uid()}`, `scores:${uid()}`];
    const streams = Array.from({ length: 12 }, (_, i) => ({ ch: chs[i % 2], s: stream(`${base}/events?channels=${chs[i % 2]}`) }));
    await Promise.all(streams.map(({ s }) => s.until(ready)));
    const sockets = await Promise.all(
      Array.from({ length: 4 }, async (_, i) => {
        const c = new WsClient(`${base.replace(/^http/, 'ws')}/live?ticket=${await ticketFor(redis, `u${i}`, [chs[i % 2]], 'ws')}`);
        cleanup.push(() => c.ws.close());
        await c.opened;
        await c.request({ action: 'ping' }, 'pong');
        return { ch: chs[i % 2], c };
      }),
    );
    const sent = new Map<string, string[]>(chs.map((c) => [c, []]));
    for (let batch = 0; batch < 6; batch++) {
      const ps = await Promise.all(Array.from({ length: 40 }, (_, i) => pub(chs[i % 2], batch * 40 + i)));
      for (const p of ps) sent.get(p.channel)!.push(p.id);
      during?.();
    }
    for (const list of sent.values()) list.sort((a, b) => Number(a) - Number(b));
    for (const { ch, s } of streams) {
      await s.until((x) => ids(x).length >= 120);
      expect(ids(s)).toEqual(sent.get(ch));
    }
    for (const { ch, c } of sockets) {
      await c.until((x) => x.events().length >= 120);
      expect(c.events().map((e) => e.id)).toEqual(sent.get(ch));
    }
  }

  test('SSE and /live: every event once, in order, per connection', async () => {
    const { service: svc, base } = await service();
    expect(svc.config.writeDelayMs).toBe(0);
    expect(svc.config.maxWriteDelayMs).toBe(100);
    await orderAndNoLoss(base);
  });

  test('with every window made to wait (flushes that look 50 ms long): every event once, in order, per connection', async () => {
    // A clock that a ballast transport moves 50 ms ahead on each flush: every flush looks 50 ms long
    // (well inside the 100-ms latency budget), and the ballast marks itself again, so each window opens
    // at once and waits what the budget leaves, capped at MAX_WRITE_DELAY_MS (10 ms).
    let skew = 0;
    let active = true;
    const window = new FlushWindow({ maxWriteDelayMs: 10, latencyBudgetMs: 100, now: () => performance.now() + skew });
    const ballast: Flushable = {
      flush() {
        if (active) window.mark(ballast);
        skew += 50;
        return 1;
      },
    };
    cleanup.push(() => {
      active = false;
    });
    window.mark(ballast);
    const { base } = await service({}, { window });
    const before = window.waits;
    await orderAndNoLoss(base);
    expect(window.waits - before).toBeGreaterThan(0);
  });
});

describe('graceful drain', () => {
  test('clients of the draining instance resume on the other with 0 events lost', async () => {
    const a = await service();
    const b = await service();
    const ch = `chat:${uid()}`;
    // A stand-in for the ALB: route to A until it starts draining (its health check fails), then to B.
    // Each client is its own browser, with its own cookie jar.
    const lb = (jar = cookieFetch()): typeof fetch => (input, init) => {
      const target = a.service.isDraining ? b.base : a.base;
      return jar.fetch(String(input).replace(/^http:\/\/[^/]+/, target), init);
    };
    const clients = await Promise.all(
      Array.from({ length: 5 }, async (_, i) => {
        const es = new EventSource(`${a.base}/events?channels=${ch}&ticket=${await ticketFor(redis, `u${i}`, [ch])}`, { fetch: lb() });
        cleanup.push(() => es.close());
        const got: string[] = [];
        let readies = 0;
        es.addEventListener('update', (e) => got.push(JSON.parse(e.data).id));
        es.addEventListener('reset', () => got.push('reset'));
        es.addEventListener('ready', () => readies++);
        return { es, got, readies: () => readies };
      }),
    );
    await eventually(() => clients.every((c) => c.readies() === 1), 5000, 'all connected to A');
    expect(a.service.connections).toBe(5);

    const sent: string[] = [];
    let publishing = true;
    const publisher = (async () => {
      while (publishing) {
        sent.push((await pub(ch, sent.length)).id);
        // Slow enough that the channel's history (200 events for chat) covers the whole move.
        await new Promise((r) => setTimeout(r, 40));
      }
    })();
    await new Promise((r) => setTimeout(r, 100));
    const drained = a.service.drain(1500);
    // Liveness stays 200 while draining (the body says so); readiness answers 503.
    expect(JSON.parse((await get(`${a.base}/healthz`)).body)).toMatchObject({ draining: true });
    expect((await get(`${a.base}/healthz?deep=1`)).status).toBe(503);
    await drained;
    await eventually(() => b.service.connections === 5, 10_000, 'all moved to B');
    await new Promise((r) => setTimeout(r, 100));
    publishing = false;
    await publisher;
    await eventually(() => clients.every((c) => c.got.length >= sent.length), 10_000, 'every event').catch((e) => {
      throw new Error(`${e.message}: sent ${sent.length}, got ${clients.map((c) => c.got.length)}; missing ${sent.filter((x) => !clients[0].got.includes(x)).slice(0, 5)} dup ${clients[0].got.length - new Set(clients[0].got).size}`);
    });
    for (const c of clients) expect(c.got).toEqual(sent);
  });

  test('SIGTERM on the real process: streams are told to reconnect, exit code 0; metrics lines are EMF', async () => {
    const { proc, base, output } = await spawnTask({ DRAIN_TIMEOUT_MS: '1000', METRICS_INTERVAL_MS: '300' }, cleanup);
    const s = stream(`${base}/events?channels=scores:${uid()}`);
    await s.until(ready);
    await eventually(() => output().includes('"OpenConnections"'), 5000, 'an EMF line');
    const emf = output().split('\n').filter((l) => l.includes('"_aws"')).map((l) => JSON.parse(l));
    expect(emf.at(-1)._aws.CloudWatchMetrics[0]).toMatchObject({ Namespace: 'RealtimeBlueprint' });
    expect(emf.at(-1)._aws.CloudWatchMetrics[0].Metrics.map((m: { Name: string }) => m.Name)).toEqual(
      expect.arrayContaining(['OpenConnections', 'Deliveries', 'SlowConsumerDrops', 'Replays', 'Resets', 'RedisReconnects']),
    );
    const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
    proc.kill('SIGTERM');
    await s.until((x) => x.ended, 5000);
    expect(s.text).toMatch(/retry: \d+\n\n: draining; reconnect\n\n$/);
    expect(await exited).toBe(0);
  }, 40_000);
});
