/**
 * No reader writes shared state beyond what a failover can explain (issue 20, item 1). A cursor that cannot be an
 * id this deployment issued (ahead of Redis time, past 2^53) is refused (`400 invalid_cursor`) on JSON paths and
 * answered with a `reset` on a native SSE stream and a WebSocket subscribe; every key stays as it was (positions per
 * channel: the channels' bases and lost ranges). A plausible cursor ahead of a channel's position (a real failover)
 * still marks its range as lost on that channel, and only that range.
 */
import type Redis from 'ioredis';
import pino from 'pino';
import { parseChannel } from '../../core/channels';
import type { Namespaces } from '../../core/config';
import { claimCursor, currentCursor, publish, replay } from '../../core/events';
import { Keys } from '../../core/redis/keys';
import type { LocalStack } from '../../local/stack';
import { publish as publishOver } from '../support/client-kit';
import { allKeys, connectRedis, coreConfig, get, RawStream, TEST_NAMESPACES, ticketFor, uid } from '../support/harness';
import { connectWs, type WsClient } from './ws-support';

process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';

const SERVER = { kind: 'server', principal: 'arn:aws:iam::1:role/backend' } as const;
const NAMESPACES: Namespaces = { ...TEST_NAMESPACES, brief: { subscribe: 'public', publish: 'server', historySize: 10, historyTtlSeconds: 600 } };
/** 16 digits, far ahead of any id (Redis time in microseconds is about 1.8e15 in 2026). */
const FAR = '9999999999999999';
/** 16 digits, past 2^53 (9007199254740992): a Lua number cannot hold it exactly. */
const PAST_2_53 = '9007199254740993';

let redis: Redis;
beforeAll(async () => {
  redis = await connectRedis();
});
afterAll(() => redis.disconnect());

/** Everything a reader could have written, whatever its key: strings (bases, last ids, markers), sorted sets (lost ranges), streams. */
async function sharedState(keys: Keys): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  // A channel's keys (history, horizon, gap, last id, base, lost ranges) and the registry's floor; not a connection's own records.
  const channelKey = /^[^:]*:(?:h|hx|hg|hl|hb|hr):\{/;
  // Every primary's keys on a cluster (REDIS_CLUSTER=1), where the channels live on different shards.
  for (const k of (await allKeys(redis, `${keys.prefix}*`)).filter((key) => channelKey.test(key))) {
    const type = await redis.type(k);
    if (type === 'string') out[k] = String(await redis.get(k));
    else if (type === 'zset') out[k] = JSON.stringify(await redis.zrange(k, 0, -1, 'WITHSCORES'));
    else if (type === 'stream') out[k] = `stream of ${await redis.xlen(k)}`;
    else out[k] = type;
  }
  return out;
}

describe('core: replay and claimCursor', () => {
  const isolated = () => {
    const keys = new Keys(`cb${uid()}:`);
    return { keys, deps: { redis, config: coreConfig({ keyPrefix: keys.prefix, namespaces: NAMESPACES }) } };
  };
  const ch = (name: string) => parseChannel(name, NAMESPACES);

  test.each([FAR, PAST_2_53])('cursor %s: invalid_cursor, and the channel\'s base, last id and lost ranges are untouched', async (cursor) => {
    const { keys, deps } = isolated();
    const a = ch(`brief:${uid()}`);
    await publish({ channel: a.channel, type: 't', data: 1 }, SERVER, deps);
    const before = await sharedState(keys);
    await expect(replay([a], [Number(cursor)], deps)).rejects.toMatchObject({ code: 'invalid_cursor' });
    await expect(claimCursor(a, Number(cursor), deps)).rejects.toMatchObject({ code: 'invalid_cursor' });
    expect(await sharedState(keys)).toEqual(before);
    // Publishing goes on with ids of 16 digits below 2^53.
    const next = await publish({ channel: a.channel, type: 't', data: 2 }, SERVER, deps);
    expect(next.id).toMatch(/^\d{16}$/);
    expect(Number.isSafeInteger(Number(next.id))).toBe(true);
  });

  test('a cursor a little ahead of Redis time, beyond the clock allowance, is refused in Redis too (not only by the caller\'s clock)', async () => {
    const { keys, deps } = isolated();
    const a = ch(`brief:${uid()}`);
    await publish({ channel: a.channel, type: 't', data: 1 }, SERVER, deps);
    const [s, us] = (await redis.time()) as [number | string, number | string];
    const redisNow = Number(s) * 1_000_000 + Number(us);
    const before = await sharedState(keys);
    // Two seconds ahead of Redis: more than the clock allowance (1 s), well within 16 digits.
    await expect(claimCursor(a, redisNow + 2_000_000, deps)).rejects.toMatchObject({ code: 'invalid_cursor' });
    await expect(replay([a], [redisNow + 2_000_000], deps)).rejects.toMatchObject({ code: 'invalid_cursor' });
    expect(await sharedState(keys)).toEqual(before);
  });

  test('two small jumps ahead of a channel\'s position record two ranges on it: a reader holding a real id between them is not reset', async () => {
    const { keys, deps } = isolated();
    const a = ch(`brief:${uid()}`);
    const other = ch(`brief:${uid()}`);
    await publish({ channel: a.channel, type: 't', data: 0 }, SERVER, deps);
    const o = await publish({ channel: other.channel, type: 't', data: 0 }, SERVER, deps);
    const [p1] = await currentCursor([a], deps);
    const jump1 = p1 + 10;
    expect(await claimCursor(a, jump1, deps)).toEqual({ reset: true, position: jump1 + 1 });
    const real = await publish({ channel: a.channel, type: 't', data: 'held by a client' }, SERVER, deps);
    expect(Number(real.id)).toBeGreaterThan(jump1);
    const jump2 = (await currentCursor([a], deps))[0] + 10;
    expect((await claimCursor(a, jump2, deps)).reset).toBe(true);
    // The client holding `real` resumes without a reset, and readers inside either jumped range are reset.
    expect((await replay([a], [Number(real.id)], deps)).resets).toEqual([]);
    expect((await replay([a], [jump1 - 1], deps)).resets).toEqual([a.channel]);
    expect((await replay([a], [jump2 - 1], deps)).resets).toEqual([a.channel]);
    // The other channel was not touched: its reader resumes, and no lost range was written on it.
    expect((await replay([other], [Number(o.id)], deps)).resets).toEqual([]);
    expect(await redis.exists(keys.lostRanges(other.channel))).toBe(0);
  });
});

describe('on the wire: /poll, /events, /live and the API Gateway subscribe', () => {
  let stack: LocalStack;
  let keys: Keys;
  let sseBase: string;
  const open: WsClient[] = [];
  const deps = () => ({ redis, config: coreConfig({ keyPrefix: keys.prefix, namespaces: NAMESPACES }) });
  beforeAll(async () => {
    keys = new Keys(`cw${uid()}:`);
    const { startLocalStack } = await import('../../local/stack');
    stack = await startLocalStack({
      logger: pino({ level: 'silent' }),
      webSocketMode: 'both',
      env: { KEY_PREFIX: keys.prefix, NAMESPACES_JSON: JSON.stringify(NAMESPACES), WS_GONE_GRACE_MS: '0', LOG_LEVEL: 'silent', ANON_REQUESTS_PER_MINUTE: '0' },
    });
    sseBase = stack.outputs.SseUrl.replace(/\/events$/, '');
  });
  afterEach(() => {
    for (const c of open.splice(0)) c.close();
  });
  afterAll(() => stack.close());

  const seeded = async () => {
    const a = `brief:${uid()}`;
    const first = await publish({ channel: a, type: 't', data: 0 }, SERVER, deps());
    return { a, first, before: await sharedState(keys) };
  };

  test.each([FAR, PAST_2_53])('GET /poll?cursor=%s without a ticket: 400 invalid_cursor, shared state untouched', async (cursor) => {
    const { a, before } = await seeded();
    const res = await get(`${sseBase}/poll?channels=${a}&cursor=${cursor}`);
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body)).toMatchObject({ error: { code: 'invalid_cursor' } });
    expect(await sharedState(keys)).toEqual(before);
  });

  test('GET /events by an API client (no text/event-stream): 400 invalid_cursor, shared state untouched', async () => {
    const { a, before } = await seeded();
    const res = await get(`${sseBase}/events?channels=${a}&lastEventId=${FAR}`);
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body)).toMatchObject({ error: { code: 'invalid_cursor' } });
    expect(await sharedState(keys)).toEqual(before);
  });

  test.each([FAR, PAST_2_53, '12345678901234567'])('native SSE with Last-Event-ID %s: 200, a reset per channel, ready, then live; shared state untouched', async (cursor) => {
    const { a, before } = await seeded();
    const b = `brief:${uid()}`;
    const s = new RawStream(`${sseBase}/events?channels=${a},${b}`, { 'last-event-id': cursor });
    try {
      await s.until((x) => x.events().some((e) => e.event === 'ready'));
      expect(s.status).toBe(200);
      expect(s.events().filter((e) => e.event === 'reset').map((e) => JSON.parse(e.data).channel).sort()).toEqual([a, b].sort());
      expect(await sharedState(keys)).toEqual(before);
      const next = await publish({ channel: a, type: 't', data: 'live' }, SERVER, deps());
      await s.until((x) => x.events().some((e) => e.id === next.id));
    } finally {
      s.close();
    }
  });

  /** 10 s ahead of Redis time: within the callers' own allowance (60 s), so Redis's clock refuses it, in the scripts. */
  const aheadOfRedis = async () => {
    const [sec, us] = (await redis.time()) as [number | string, number | string];
    return String(Number(sec) * 1_000_000 + Number(us) + 10_000_000);
  };

  test('GET /poll with a cursor 10 s ahead of Redis time (refused by the script, not the pre-check): 400, shared state untouched', async () => {
    const { a, before } = await seeded();
    const res = await get(`${sseBase}/poll?channels=${a}&cursor=${await aheadOfRedis()}`);
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body)).toMatchObject({ error: { code: 'invalid_cursor' } });
    expect(await sharedState(keys)).toEqual(before);
  });

  test('native SSE with Last-Event-ID 10 s ahead of Redis time (refused by the script): reset per channel, ready; shared state untouched', async () => {
    const { a, before } = await seeded();
    const s = new RawStream(`${sseBase}/events?channels=${a}`, { 'last-event-id': await aheadOfRedis() });
    try {
      await s.until((x) => x.events().some((e) => e.event === 'ready'));
      expect(s.events().filter((e) => e.event === 'reset').map((e) => JSON.parse(e.data).channel)).toEqual([a]);
      expect(await sharedState(keys)).toEqual(before);
    } finally {
      s.close();
    }
  });

  const subscribeWithSince = async (url: string, since: string) => {
    const a = `chat:${uid()}`;
    await publish({ channel: a, type: 't', data: 0 }, SERVER, deps());
    const before = await sharedState(keys);
    const c = await connectWs(`${url}?ticket=${await ticketFor(redis, 'alice', [a], 'ws', deps().config)}`);
    open.push(c);
    await c.request({ action: 'subscribe', channel: a, since }, 'subscribed');
    expect(c.signals('reset')).toEqual([{ type: 'reset', channel: a, reason: 'history_unavailable' }]);
    expect(await sharedState(keys)).toEqual(before);
    // Publishing (through POST /publish, which fans out to API Gateway connections too) still works and the event arrives.
    const next = await publishOver(stack.outputs.PublishUrl, a, 'after');
    expect(next).toMatch(/^\d{16}$/);
    await c.until((x) => x.events(a).some((e) => e.id === next));
  };

  test.each([FAR, PAST_2_53, 'redis+10s'])('/live subscribe with since %s: reset, shared state untouched, publishes go on', async (since) => {
    await subscribeWithSince(stack.outputs.LiveUrl, since === 'redis+10s' ? await aheadOfRedis() : since);
  });

  test.each([FAR, PAST_2_53, 'redis+10s'])('API Gateway subscribe with since %s: reset, shared state untouched, publishes go on', async (since) => {
    await subscribeWithSince(stack.outputs.WebSocketUrl, since === 'redis+10s' ? await aheadOfRedis() : since);
  });
});
