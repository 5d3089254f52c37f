import type Redis from 'ioredis';
import pino from 'pino';
import { parseChannel } from '../../core/channels';
import { LAST_ID_TAIL_SECONDS, type Namespaces } from '../../core/config';
import { decodeCursor, encodeCursor } from '../../core/cursor';
import { currentCursor, publish, replay } from '../../core/events';
import { Keys } from '../../core/redis/keys';
import type { LocalStack } from '../../local/stack';
import type { RealtimeServer } from '../../service/realtime-server';
import { allKeys, connectRedis, coreConfig, delKeys, eventually, get, RawStream, startService, TEST_NAMESPACES, ticketFor, uid } from '../support/harness';
import { connectWs, type WsClient } from './ws-support';

process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';

const SERVER = { kind: 'server', principal: 'arn:aws:iam::1:role/backend' } as const;
/** Public (no ticket needed over HTTP), short history TTL, room for a few events. */
const NAMESPACES: Namespaces = {
  ...TEST_NAMESPACES,
  brief: { subscribe: 'public', publish: 'server', historySize: 10, historyTtlSeconds: 60 },
  flash: { subscribe: 'public', publish: 'server', historySize: 0, historyTtlSeconds: 60 },
};

let redis: Redis;
beforeAll(async () => {
  redis = await connectRedis();
});
afterAll(() => redis.disconnect());

/** A prefix of its own per test: these tests roll channels back and delete keys, which must not disturb others. */
function isolated() {
  const prefix = `h${uid()}:`;
  const deps = { redis, config: coreConfig({ keyPrefix: prefix, namespaces: NAMESPACES }) };
  return { prefix, keys: new Keys(prefix), deps };
}
const ch = (name: string) => parseChannel(name, NAMESPACES);
const ids = (envs: string[]) => envs.map((e) => JSON.parse(e).id as string);

/** Lets Redis expire the key itself (1 ms TTL), then waits until it is gone: no sleeping for a TTL. */
async function expireNow(key: string): Promise<void> {
  expect(await redis.pexpire(key, 1)).toBe(1);
  await eventually(async () => (await redis.exists(key)) === 0, 5000, `${key} to expire`);
}

describe('history that expired or was evicted (item: no silent loss)', () => {
  test('stream expired, nothing published since: a cursor before its last event gets reset', async () => {
    const { keys, deps } = isolated();
    const a = ch(`brief:${uid()}`);
    const first = await publish({ channel: a.channel, type: 't', data: 1 }, SERVER, deps);
    const last = await publish({ channel: a.channel, type: 't', data: 2 }, SERVER, deps);
    await expireNow(keys.history(a.channel));
    const r = await replay([a], [Number(first.id)], deps);
    expect(r.resets).toEqual([a.channel]);
    expect(r.events).toEqual([]);
    // A reader that had seen the last event missed nothing.
    expect((await replay([a], [Number(last.id)], deps)).resets).toEqual([]);
  });

  test('stream evicted, then new events: a resume from before the gap gets reset and the new events', async () => {
    const { keys, deps } = isolated();
    const a = ch(`brief:${uid()}`);
    const other = ch(`brief:${uid()}`);
    const before = await publish({ channel: a.channel, type: 't', data: 'old-1' }, SERVER, deps);
    await publish({ channel: a.channel, type: 't', data: 'old-2' }, SERVER, deps);
    const o = await publish({ channel: other.channel, type: 't', data: 'other' }, SERVER, deps);
    await redis.del(keys.history(a.channel)); // what eviction (or expiry) leaves behind
    const n1 = await publish({ channel: a.channel, type: 't', data: 'new-1' }, SERVER, deps);
    const n2 = await publish({ channel: a.channel, type: 't', data: 'new-2' }, SERVER, deps);
    // The reader saw `before` on a and nothing yet on the other channel.
    const r = await replay([a, other], [Number(before.id), 0], deps);
    expect(r.resets).toEqual([a.channel]);
    expect(ids(r.events)).toEqual([o.id, n1.id, n2.id]);
    expect(r.positions).toEqual([Number(n2.id), Number(o.id)]);
    // A cursor after the gap replays normally.
    const after = await replay([a], [Number(n1.id)], deps);
    expect(after.resets).toEqual([]);
    expect(ids(after.events)).toEqual([n2.id]);
  });

  test('the last id outlives the history by the tail, and horizon and gap live exactly as long', async () => {
    const { keys, deps } = isolated();
    const a = ch(`tiny:${uid()}`); // history of 3, TTL 600 s
    for (let i = 0; i < 4; i++) await publish({ channel: a.channel, type: 't', data: i }, SERVER, deps);
    await redis.del(keys.history(a.channel));
    await publish({ channel: a.channel, type: 't', data: 'again' }, SERVER, deps);
    for (let i = 0; i < 3; i++) await publish({ channel: a.channel, type: 't', data: i }, SERVER, deps);
    const keep = 600 + LAST_ID_TAIL_SECONDS;
    for (const key of [keys.lastId(a.channel), keys.horizon(a.channel), keys.gap(a.channel)]) {
      const ttl = await redis.ttl(key);
      expect(ttl).toBeGreaterThan(keep - 10);
      expect(ttl).toBeLessThanOrEqual(keep);
    }
    expect(await redis.ttl(keys.history(a.channel))).toBeLessThanOrEqual(600);
  });

  test('a quiet channel that never expired: no spurious reset', async () => {
    const { deps } = isolated();
    const a = ch(`brief:${uid()}`);
    const e1 = await publish({ channel: a.channel, type: 't', data: 1 }, SERVER, deps);
    const e2 = await publish({ channel: a.channel, type: 't', data: 2 }, SERVER, deps);
    // Much later, other channels published.
    for (let i = 0; i < 5; i++) await publish({ channel: `brief:${uid()}`, type: 't', data: i }, SERVER, deps);
    expect(await replay([a], [Number(e2.id)], deps)).toMatchObject({ resets: [], events: [] });
    const r = await replay([a], [Number(e1.id)], deps);
    expect(r.resets).toEqual([]);
    expect(ids(r.events)).toEqual([e2.id]);
  });

  test('a channel that never had events: no spurious reset, at its own position (0) or under a shared cursor', async () => {
    const { deps } = isolated();
    const e = await publish({ channel: `brief:${uid()}`, type: 't', data: 'elsewhere' }, SERVER, deps);
    const never = [ch(`brief:${uid()}`), ch(`flash:${uid()}`)];
    const cursor = await currentCursor(never, deps);
    expect(cursor).toEqual([0, 0]);
    expect(await replay(never, cursor, deps)).toMatchObject({ resets: [], events: [], positions: [0, 0] });
    // One number for every channel (a cursor from before positions were per channel): not a loss on a channel without events.
    expect(await replay(never, { positions: [Number(e.id), Number(e.id)], shared: true }, deps)).toMatchObject({ resets: [], events: [] });
  });

  test('history disabled (size 0) once the horizon would have expired: a resume that missed events still gets reset', async () => {
    const { keys, deps } = isolated();
    const a = ch(`flash:${uid()}`);
    const before = await currentCursor([a], deps);
    const e = await publish({ channel: a.channel, type: 't', data: 1 }, SERVER, deps);
    await redis.del(keys.horizon(a.channel));
    expect((await replay([a], before, deps)).resets).toEqual([a.channel]);
    expect((await replay([a], [Number(e.id)], deps)).resets).toEqual([]);
  });
});

describe('a cursor ahead of a channel\'s position (failover lost its last writes)', () => {
  test('resume with the higher cursor: reset for that channel only, and its next id is above the cursor', async () => {
    const { keys, deps } = isolated();
    const a = ch(`brief:${uid()}`);
    const b = ch(`brief:${uid()}`);
    const kept = await publish({ channel: a.channel, type: 't', data: 'replicated' }, SERVER, deps);
    const onB = await publish({ channel: b.channel, type: 't', data: 'on another shard' }, SERVER, deps);
    const seen = await publish({ channel: a.channel, type: 't', data: 'lost' }, SERVER, deps);
    // The new primary of a's shard lost the last write: a is back where it was after `kept`; b is untouched.
    await redis.xtrim(keys.history(a.channel), 'MAXLEN', 1);
    await redis.set(keys.lastId(a.channel), kept.id);
    const r = await replay([a, b], [Number(seen.id), Number(onB.id)], deps);
    expect(r.resets).toEqual([a.channel]);
    expect(r.events).toEqual([]);
    expect(r.positions).toEqual([Number(seen.id) + 1, Number(onB.id)]);
    const next = await publish({ channel: a.channel, type: 't', data: 'after' }, SERVER, deps);
    expect(Number(next.id)).toBeGreaterThan(Number(seen.id));
    // The reader continues from its positions and gets the new event, without another reset.
    expect(await replay([a, b], r.positions, deps)).toMatchObject({ resets: [], events: [expect.stringContaining(`"id":"${next.id}"`)] });
    // Another reader holding an id from the lost range is reset too, although the channel has moved on.
    expect((await replay([a], [Number(seen.id) - 1], deps)).resets).toEqual([a.channel]);
    // A reader from before the loss is not.
    expect((await replay([a], [Number(kept.id)], deps)).resets).toEqual([]);
    // b's state was neither read for a nor written.
    expect(await redis.exists(keys.lostRanges(b.channel))).toBe(0);
  });

  test('publish after a roll-back never returns an id at or below the channel\'s last id', async () => {
    const { keys, deps } = isolated();
    const a = ch(`brief:${uid()}`);
    const first = await publish({ channel: a.channel, type: 't', data: 1 }, SERVER, deps);
    const last = await publish({ channel: a.channel, type: 't', data: 2 }, SERVER, deps);
    // A last id issued by a primary whose clock was ahead (half a second, within the allowance).
    const ahead = Number(last.id) + 500_000;
    await redis.set(keys.lastId(a.channel), String(ahead));
    const next = await publish({ channel: a.channel, type: 't', data: 3 }, SERVER, deps);
    expect(Number(next.id)).toBeGreaterThan(ahead);
    const hist = await redis.xrange(keys.history(a.channel), '-', '+');
    expect(hist.map((e) => e[0])).toEqual([`${first.id}-0`, `${last.id}-0`, `${next.id}-0`]);
    // Without its last id (evicted), the channel's newest entry bounds the next id instead.
    await redis.del(keys.lastId(a.channel));
    const after = await publish({ channel: a.channel, type: 't', data: 4 }, SERVER, deps);
    expect(Number(after.id)).toBeGreaterThan(Number(next.id));
  });

  test('Redis lost everything and nothing was published since: a cursor gets reset, the channel\'s new epoch begins past it', async () => {
    const { keys, deps } = isolated();
    const a = ch(`brief:${uid()}`);
    const e = await publish({ channel: a.channel, type: 't', data: 1 }, SERVER, deps);
    // Every shard's keys of this test's prefix, one DEL each (KEYS on a cluster client asks one node; a DEL of keys in
    // several slots is refused).
    await delKeys(redis, await allKeys(redis, `${keys.prefix}*`));
    const r = await replay([a], [Number(e.id)], deps);
    expect(r.resets).toEqual([a.channel]);
    // The reader wrote nothing.
    expect(await allKeys(redis, `${keys.prefix}*`)).toEqual([]);
    const next = await publish({ channel: a.channel, type: 't', data: 2 }, SERVER, deps);
    expect(Number(next.id)).toBeGreaterThan(Number(e.id));
    expect((await replay([a], [Number(e.id) - 1], deps)).resets).toEqual([a.channel]);
  });
});

describe('on the wire: long poll and SSE resume', () => {
  let service: RealtimeServer;
  let base: string;
  let keys: Keys;
  const deps = () => ({ redis, config: coreConfig({ keyPrefix: keys.prefix, namespaces: NAMESPACES }) });
  beforeAll(async () => {
    keys = new Keys(`w${uid()}:`);
    ({ service, base } = await startService({ KEY_PREFIX: keys.prefix, NAMESPACES_JSON: JSON.stringify(NAMESPACES) }));
  });
  afterAll(() => service.close());

  test('poll after the history expired: resets, not a silent gap', async () => {
    const a = `brief:${uid()}`;
    const c0 = await publish({ channel: a, type: 't', data: 0 }, SERVER, deps());
    await publish({ channel: a, type: 't', data: 'missed' }, SERVER, deps());
    await expireNow(keys.history(a));
    const late = await publish({ channel: a, type: 't', data: 'late' }, SERVER, deps());
    const body = JSON.parse((await get(`${base}/poll?channels=${a}&cursor=${c0.id}`)).body);
    expect(body.resets).toEqual([a]);
    expect(ids(body.events.map((e: unknown) => JSON.stringify(e)))).toEqual([late.id]);
  });

  test('SSE resume after the history expired: a reset event before ready', async () => {
    const a = `brief:${uid()}`;
    const c0 = await publish({ channel: a, type: 't', data: 0 }, SERVER, deps());
    await publish({ channel: a, type: 't', data: 'missed' }, SERVER, deps());
    await expireNow(keys.history(a));
    const s = new RawStream(`${base}/events?channels=${a}&lastEventId=${c0.id}`);
    try {
      await s.until((x) => x.events().some((e) => e.event === 'ready'));
      expect(s.events().filter((e) => e.event === 'reset').map((e) => JSON.parse(e.data))).toEqual([{ channel: a, reason: 'history_unavailable' }]);
    } finally {
      s.close();
    }
  });

  test('poll with a cursor ahead of one channel\'s position (failover): that channel reset, the other not; later events arrive', async () => {
    const [a, b] = [`brief:${uid()}`, `brief:${uid()}`].sort();
    const kept = await publish({ channel: a, type: 't', data: 0 }, SERVER, deps());
    const seen = await publish({ channel: b, type: 't', data: 'lost' }, SERVER, deps());
    // b's shard lost its last write (its base survived); a's is intact.
    await redis.del(keys.history(b), keys.lastId(b));
    const cursor = encodeCursor([Number(kept.id), Number(seen.id)]);
    const body = JSON.parse((await get(`${base}/poll?channels=${a},${b}&cursor=${cursor}`)).body);
    expect(body.resets).toEqual([b]);
    expect(decodeCursor(body.cursor, 2).positions).toEqual([Number(kept.id), Number(seen.id) + 1]);
    const next = await publish({ channel: b, type: 't', data: 'next' }, SERVER, deps());
    expect(Number(next.id)).toBeGreaterThan(Number(seen.id));
    const again = JSON.parse((await get(`${base}/poll?channels=${a},${b}&cursor=${body.cursor}`)).body);
    expect(again.resets).toEqual([]);
    expect(decodeCursor(again.cursor, 2).positions).toEqual([Number(kept.id), Number(next.id)]);
    expect(ids(again.events.map((e: unknown) => JSON.stringify(e)))).toEqual([next.id]);
  });
});

describe('on the wire: WebSocket subscribe with since', () => {
  let stack: LocalStack;
  let keys: Keys;
  const open: WsClient[] = [];
  const deps = () => ({ redis, config: coreConfig({ keyPrefix: keys.prefix, namespaces: NAMESPACES }) });
  const client = async (sub: string, channels: string[]) => {
    const c = await connectWs(`${stack.outputs.WebSocketUrl}?ticket=${await ticketFor(redis, sub, channels, 'ws', deps().config)}`);
    open.push(c);
    return c;
  };
  beforeAll(async () => {
    keys = new Keys(`s${uid()}:`);
    const { startLocalStack } = await import('../../local/stack');
    stack = await startLocalStack({ logger: pino({ level: 'silent' }), env: { KEY_PREFIX: keys.prefix, NAMESPACES_JSON: JSON.stringify(NAMESPACES), WS_GONE_GRACE_MS: '0' } });
  });
  afterEach(() => {
    for (const c of open.splice(0)) c.close();
  });
  afterAll(() => stack.close());

  test('since before an expired history: reset', async () => {
    const a = `chat:${uid()}`;
    const c0 = await publish({ channel: a, type: 't', data: 0 }, SERVER, deps());
    await publish({ channel: a, type: 't', data: 'missed' }, SERVER, deps());
    await expireNow(keys.history(a));
    const c = await client('alice', [a]);
    await c.request({ action: 'subscribe', channel: a, since: c0.id }, 'subscribed');
    expect(c.signals('reset')).toEqual([{ type: 'reset', channel: a, reason: 'history_unavailable' }]);
  });

  test('since ahead of a rolled-back channel: reset on a new subscription and on one made at $connect; the next id is above it', async () => {
    const a = `chat:${uid()}`;
    const b = `chat:${uid()}`;
    const keptA = await publish({ channel: a, type: 't', data: 0 }, SERVER, deps());
    const keptB = await publish({ channel: b, type: 't', data: 0 }, SERVER, deps());
    const c = await client('alice', [a, b]);
    await c.request({ action: 'unsubscribe', channel: b }, 'unsubscribed');
    const seenB = await publish({ channel: b, type: 't', data: 'lost' }, SERVER, deps());
    const seenA = await publish({ channel: a, type: 't', data: 'lost' }, SERVER, deps());
    // A failover lost the last write of each channel.
    for (const [ch, kept] of [[a, keptA], [b, keptB]] as const) {
      await redis.xtrim(keys.history(ch), 'MAXLEN', 1);
      await redis.set(keys.lastId(ch), kept.id);
    }
    // b: a new subscription; a: subscribed at $connect, with a floor below the cursor.
    await c.request({ action: 'subscribe', channel: b, since: seenB.id }, 'subscribed', (f) => f.channel === b);
    await c.request({ action: 'subscribe', channel: a, since: seenA.id }, 'subscribed', (f) => f.channel === a);
    expect(c.signals('reset').map((f) => f.channel)).toEqual([b, a]);
    const next = await publish({ channel: a, type: 't', data: 'next' }, SERVER, deps());
    expect(Number(next.id)).toBeGreaterThan(Number(seenA.id));
  });

  test('since above the floor of a subscription made at $connect, no loss: no reset', async () => {
    const a = `chat:${uid()}`;
    const c = await client('alice', [a]);
    const e = await publish({ channel: a, type: 't', data: 1 }, SERVER, deps());
    await c.request({ action: 'subscribe', channel: a, since: e.id }, 'subscribed');
    expect(c.signals('reset')).toEqual([]);
  });
});
