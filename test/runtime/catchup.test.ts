import Redis from 'ioredis';
import pino from 'pino';
import { publish } from '../../core/events';
import { createRedis, waitReady } from '../../core/redis/client';
import { Keys } from '../../core/redis/keys';
import { serviceConfigFromEnv } from '../../service/config';
import { RealtimeServer } from '../../service/realtime-server';
import { coreConfig, eventually, RawStream, redisUrl, SESSION_SECRET, TEST_NAMESPACES, uid, useRedis } from '../support/harness';
import { TcpProxy } from '../support/tcp-proxy';

const SERVER = { kind: 'server', principal: 'test-backend' } as const;
const config = coreConfig();
let redis: Redis;
const cleanup = useRedis((r) => (redis = r));

const pub = async (channel: string, data: unknown) => (await publish({ channel, type: 'update', data }, SERVER, { redis, config })).id;
const ready = (s: RawStream) => s.events().some((e) => e.event === 'ready');
const ids = (s: RawStream) => s.events().filter((e) => e.event === 'update').map((e) => e.id!);
/** Replay commands (EVALSHA, or EVAL after NOSCRIPT) a stalled proxy holds. */
const replaysHeld = (p: TcpProxy) => (p.held().match(/\$7\r\nevalsha\r\n|\$4\r\neval\r\n/gi) ?? []).length;

/**
 * A service whose two Redis connections go through proxies the test controls: the subscriber's
 * can be cut (a Redis reconnect, as in a failover), the command connection's stalled (so the
 * catch-up replays wait while live events keep coming).
 */
async function service(env: Record<string, string>) {
  const port = Number(new URL(redisUrl()).port);
  const subProxy = new TcpProxy(port);
  const cmdProxy = new TcpProxy(port);
  const [subUrl, cmdUrl] = [await subProxy.start(), await cmdProxy.start()];
  // The command client as the service makes it, without the 5 s command timeout: a stall here lasts as long as the test needs.
  const commands = new Redis(cmdUrl, { maxRetriesPerRequest: 1, enableOfflineQueue: false, retryStrategy: () => 50 });
  commands.on('error', () => undefined);
  const subscriber = createRedis({ url: subUrl, name: 'sse-subscriber', failFast: false });
  await Promise.all([waitReady(commands), waitReady(subscriber)]);
  const svc = new RealtimeServer(
    serviceConfigFromEnv({ REDIS_URL: redisUrl(), SESSION_SECRET, NAMESPACES_JSON: JSON.stringify(TEST_NAMESPACES), COOKIE_SECURE: 'false', LOG_LEVEL: 'silent', METRICS_INTERVAL_MS: '0', ...env }),
    { redis: commands, subscriber, logger: pino({ level: 'silent' }) },
  );
  const base = `http://127.0.0.1:${await svc.listen(0, '127.0.0.1')}`;
  cleanup.push(async () => {
    await svc.close();
    commands.disconnect();
    subscriber.disconnect();
    await subProxy.close();
    await cmdProxy.close();
  });
  return { svc, base, subProxy, cmdProxy, commands };
}
function stream(url: string, headers: Record<string, string> = {}): RawStream {
  const s = new RawStream(url, headers);
  cleanup.push(() => s.close());
  return s;
}

/** Cuts the subscriber's connection, publishes what it will miss, then lets it back in with the command connection stalled. */
async function reconnectWithStalledCommands(svc: RealtimeServer, subProxy: TcpProxy, cmdProxy: TcpProxy, whileDown: () => Promise<void>) {
  subProxy.cut();
  await eventually(() => !svc.hub.ready, 10_000, 'subscriber down');
  await whileDown();
  cmdProxy.stall();
  subProxy.restore();
  await eventually(() => svc.metrics.redisReconnects === 1, 15_000, 'subscriber reconnected');
}

describe('catch-up after a Redis reconnect', () => {
  test('many streams: caught up CATCHUP_CONCURRENCY at a time, every event once and in order', async () => {
    const { svc, base, subProxy, cmdProxy } = await service({ CATCHUP_CONCURRENCY: '4' });
    const channels = [uid(), uid(), uid(), uid()].map((x) => `scores:${x}`);
    const streams = Array.from({ length: 40 }, (_, i) => ({ ch: channels[i % 4], s: stream(`${base}/events?channels=${channels[i % 4]}`) }));
    await Promise.all(streams.map(({ s }) => s.until(ready)));
    const sent = new Map<string, string[]>(channels.map((c) => [c, []]));
    const send = async (n: number) => {
      for (let i = 0; i < n; i++) for (const c of channels) sent.get(c)!.push(await pub(c, i));
    };
    await send(2);
    await Promise.all(streams.map(({ ch, s }) => s.until((x) => ids(x).length === sent.get(ch)!.length)));

    await reconnectWithStalledCommands(svc, subProxy, cmdProxy, () => send(3));
    // 40 streams wait for a catch-up; only CATCHUP_CONCURRENCY replays are in flight.
    await eventually(() => replaysHeld(cmdProxy) >= 4, 10_000, '4 replays in flight');
    const delivered = svc.hub.deliveries;
    await send(2); // live while the replays wait: held by every stream
    await eventually(() => svc.hub.deliveries >= delivered + 2 * 4 * 10, 10_000, 'live events held');
    expect(replaysHeld(cmdProxy)).toBe(4);
    cmdProxy.resume();

    await Promise.all(streams.map(({ ch, s }) => s.until((x) => ids(x).length >= sent.get(ch)!.length, 15_000)));
    for (const { ch, s } of streams) {
      expect(ids(s)).toEqual(sent.get(ch));
      expect(s.ended).toBe(false);
    }
    expect(svc.metrics.heldOverflows).toBe(0);
  });

  test('streams of one channel: the first replays from Redis, the others are caught up from what the hub holds after it; every event once and in order', async () => {
    const { svc, base, subProxy, commands } = await service({ CATCHUP_CONCURRENCY: '1' });
    const ch = `scores:${uid()}`;
    const streams = Array.from({ length: 10 }, () => stream(`${base}/events?channels=${ch}`));
    await Promise.all(streams.map((s) => s.until(ready)));
    const sent: string[] = [];
    for (let i = 0; i < 2; i++) sent.push(await pub(ch, i));
    await Promise.all(streams.map((s) => s.until((x) => ids(x).length === sent.length)));
    subProxy.cut();
    await eventually(() => !svc.hub.ready, 10_000, 'subscriber down');
    for (let i = 0; i < 3; i++) sent.push(await pub(ch, i));
    // The scripts the command connection runs from now on (the catch-up's replays).
    let scripts = 0;
    const send = commands.sendCommand.bind(commands);
    commands.sendCommand = ((cmd: { name: string }, ...rest: unknown[]) => {
      if (cmd.name === 'evalsha' || cmd.name === 'eval') scripts++;
      return (send as (...a: unknown[]) => unknown)(cmd, ...rest);
    }) as typeof commands.sendCommand;
    subProxy.restore();
    await eventually(() => svc.metrics.redisReconnects === 1, 15_000, 'subscriber reconnected');
    await Promise.all(streams.map((s) => s.until((x) => ids(x).length >= sent.length, 15_000)));
    for (const s of streams) {
      expect(ids(s)).toEqual(sent);
      expect(s.ended).toBe(false);
    }
    expect(scripts).toBe(1);
    // Live after it, once.
    sent.push(await pub(ch, 'after'));
    await Promise.all(streams.map((s) => s.until((x) => ids(x).length >= sent.length)));
    for (const s of streams) expect(ids(s)).toEqual(sent);
  });

  test('a stream of two channels whose positions are far apart is caught up per channel: events of the lower one published meanwhile are not skipped', async () => {
    const { svc, base, subProxy, cmdProxy } = await service({});
    const [ahead, quiet] = [`scores:${uid()}`, `scores:${uid()}`];
    // ahead's last id was issued by a primary whose clock ran half a second ahead (within the clock allowance): its
    // next id is above every id quiet gets for the next half second.
    const [sec, us] = await redis.time();
    await redis.set(new Keys(config.keyPrefix).lastId(ahead), String(Number(sec) * 1_000_000 + Number(us) + 500_000));
    const s = stream(`${base}/events?channels=${[ahead, quiet].sort().join(',')}`);
    await s.until(ready);
    const sent = [await pub(ahead, 'ahead'), await pub(quiet, 'before')];
    expect(Number(sent[0])).toBeGreaterThan(Number(sent[1]));
    await s.until((x) => ids(x).length === 2);
    await reconnectWithStalledCommands(svc, subProxy, cmdProxy, async () => {
      sent.push(await pub(quiet, 'missed'));
    });
    cmdProxy.resume();
    // One number for the stream (its highest id, as before positions were per channel) would skip quiet's missed event.
    expect(Number(sent[2])).toBeLessThan(Number(sent[0]));
    await s.until((x) => ids(x).length === 3, 15_000);
    expect(ids(s)).toEqual(sent);
    expect(s.events().filter((e) => e.event === 'reset')).toEqual([]);
  });

  test('a stream holding more than MAX_HELD_EVENTS during its catch-up is closed with retry:, and a resume from its Last-Event-ID gets everything', async () => {
    const { svc, base, subProxy, cmdProxy } = await service({ CATCHUP_CONCURRENCY: '1', MAX_HELD_EVENTS: '5' });
    const ch = `scores:${uid()}`;
    const streams = [0, 1, 2].map(() => stream(`${base}/events?channels=${ch}`));
    await Promise.all(streams.map((s) => s.until(ready)));
    const sent = [await pub(ch, 'before')];
    await Promise.all(streams.map((s) => s.until((x) => ids(x).length === 1)));

    await reconnectWithStalledCommands(svc, subProxy, cmdProxy, async () => {
      sent.push(await pub(ch, 'missed'));
    });
    await eventually(() => replaysHeld(cmdProxy) >= 1, 10_000, 'a replay in flight');
    for (let i = 0; i < 8; i++) sent.push(await pub(ch, i));
    await Promise.all(streams.map((s) => s.until((x) => x.ended, 15_000)));
    for (const s of streams) {
      expect(s.text).toMatch(/retry: \d+\n\n: catching up: reconnect and resume from your last event id\n\n$/);
      expect(ids(s)).toEqual(sent.slice(0, 1));
    }
    expect(svc.metrics.heldOverflows).toBe(3);
    cmdProxy.resume();

    const resumed = streams.map((s) => stream(`${base}/events?channels=${ch}`, { 'last-event-id': ids(s).at(-1)! }));
    await Promise.all(resumed.map((s) => s.until(ready)));
    for (const s of resumed) expect(ids(s)).toEqual(sent.slice(1));
  });
});

describe('long polls across a Redis reconnect', () => {
  test('a waiting poll answers when the subscriber is back (not at its timeout), and the next poll from its cursor replays what was published meanwhile', async () => {
    // POLL_TIMEOUT_MS far beyond the test's own timeout: without the fix the poll would only answer then.
    const { svc, base, subProxy } = await service({ POLL_TIMEOUT_MS: '120000' });
    const ch = `scores:${uid()}`;
    const first = await pub(ch, 0);
    const answered = fetch(`${base}/poll?channels=${ch}&cursor=${first}`).then(async (r) => ({ status: r.status, body: (await r.json()) as { events: { id: string }[]; cursor: string } }));
    await eventually(() => svc.polls === 1, 10_000, 'poll waiting');
    subProxy.cut();
    await eventually(() => !svc.hub.ready, 10_000, 'subscriber down');
    const missed = [await pub(ch, 1), await pub(ch, 2)];
    subProxy.restore();
    const a = await answered;
    expect(a.status).toBe(200);
    // Whatever it carries, nothing is lost: the next poll from its cursor brings the rest, in order.
    const got = a.body.events.map((e) => e.id);
    const r2 = (await (await fetch(`${base}/poll?channels=${ch}&cursor=${a.body.cursor}`)).json()) as { events: { id: string }[] };
    expect([...got, ...r2.events.map((e) => e.id)]).toEqual(missed);
  }, 60_000);
});
