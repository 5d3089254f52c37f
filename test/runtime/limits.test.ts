import type Redis from 'ioredis';
import { ConfigError, coreConfigFromEnv } from '../../core/config';
import { publish } from '../../core/events';
import { Keys } from '../../core/redis/keys';
import { channelRecord, holdChannelTtls } from '../support/channel-keys';
import { connectRedis, coreConfig, TEST_NAMESPACES, uid } from '../support/harness';

const SERVER = { kind: 'server', principal: 'arn:aws:iam::1:role/backend' } as const;
const user = () => ({ kind: 'user', sub: `u-${uid()}` }) as const;

let redis: Redis;
beforeAll(async () => {
  redis = await connectRedis();
});
afterAll(() => redis.disconnect());

/** Everything under a prefix of its own: counters and channels are not shared with other tests. */
function isolated(overrides: Parameters<typeof coreConfig>[0] = {}) {
  const prefix = `l${uid()}:`;
  return { prefix, keys: new Keys(prefix), deps: { redis, config: coreConfig({ keyPrefix: prefix, ...overrides }) } };
}

async function keysUnder(prefix: string): Promise<string[]> {
  return (await redis.keys(`${prefix}*`)).sort();
}

/**
 * The channel as a refused publish must leave it (test/support/channel-keys.ts): position, base, horizon, gap, last id,
 * lost ranges and history unchanged, no TTL refreshed. Call once before the refusal (it holds the TTLs) and compare.
 */
async function channelAsIs(prefix: string, channel: string) {
  await holdChannelTtls(redis, prefix, channel);
  return channelRecord(redis, prefix, TEST_NAMESPACES, channel);
}

describe('per-user publish rate (USER_PUBLISH_PER_MINUTE)', () => {
  test('a user past the limit: rate_limited 429, nothing written; the window is one minute', async () => {
    const { prefix, keys, deps } = isolated({ userPublishPerMinute: 3 });
    const alice = user();
    const channel = `chat:${uid()}`;
    for (let i = 0; i < 3; i++) await publish({ channel, type: 't', data: i }, alice, deps);
    const before = await keysUnder(prefix);
    const state = await channelAsIs(prefix, channel);
    const refused = publish({ channel, type: 't', data: 'one too many', idempotencyKey: 'k1' }, alice, deps);
    await expect(refused).rejects.toMatchObject({ code: 'rate_limited', status: 429, message: expect.stringMatching(/At most 3 events per minute per user; retry in \d+ s\./) });
    expect(await redis.xlen(keys.history(channel))).toBe(3);
    expect(await channelRecord(redis, prefix, TEST_NAMESPACES, channel)).toEqual(state);
    expect(await keysUnder(prefix)).toEqual(before);
    const ttl = await redis.ttl(keys.userPublishes(alice.sub));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(60);
    // Another user has a budget of their own; the window ending lets this one publish again.
    await expect(publish({ channel, type: 't', data: 'bob' }, user(), deps)).resolves.toMatchObject({ duplicate: false });
    await redis.del(keys.userPublishes(alice.sub));
    await expect(publish({ channel, type: 't', data: 'again' }, alice, deps)).resolves.toMatchObject({ duplicate: false });
  });

  test('backends (kind server) are not limited', async () => {
    const { deps } = isolated({ userPublishPerMinute: 2, userNewChannelsPerHour: 1 });
    for (let i = 0; i < 6; i++) await publish({ channel: `chat:${uid()}`, type: 't', data: i }, SERVER, deps);
  });

  test('0 disables the limit', async () => {
    const { deps } = isolated({ userPublishPerMinute: 0 });
    const alice = user();
    const channel = `chat:${uid()}`;
    for (let i = 0; i < 5; i++) await publish({ channel, type: 't', data: i }, alice, deps);
  });
});

describe('per-user quota of new channels (USER_NEW_CHANNELS_PER_HOUR)', () => {
  test('a user past the quota: channel_quota_exceeded 429, nothing written; existing channels stay open', async () => {
    const { prefix, keys, deps } = isolated({ userNewChannelsPerHour: 2 });
    const alice = user();
    const [a, b, c] = [`chat:${uid()}`, `chat:${uid()}`, `chat:${uid()}`];
    await publish({ channel: a, type: 't', data: 1 }, alice, deps);
    await publish({ channel: a, type: 't', data: 2 }, alice, deps);
    await publish({ channel: b, type: 't', data: 1 }, alice, deps);
    const before = await keysUnder(prefix);
    const state = await channelAsIs(prefix, c);
    expect(state).toMatchObject({ position: 0, base: null, lastId: null, history: [] });
    await expect(publish({ channel: c, type: 't', data: 1 }, alice, deps)).rejects.toMatchObject({
      code: 'channel_quota_exceeded',
      status: 429,
      message: expect.stringMatching(/At most 2 new channels per hour per user; publish to a channel that already has events, or retry in \d+ s\./),
    });
    expect(await redis.exists(keys.history(c), keys.lastId(c))).toBe(0);
    expect(await channelRecord(redis, prefix, TEST_NAMESPACES, c)).toEqual(state);
    expect(await keysUnder(prefix)).toEqual(before);
    const ttl = await redis.ttl(keys.userNewChannels(alice.sub));
    expect(ttl).toBeGreaterThan(60);
    expect(ttl).toBeLessThanOrEqual(3600);
    // Channels that already have events (the user's, or anyone's) are not new.
    await expect(publish({ channel: b, type: 't', data: 2 }, alice, deps)).resolves.toMatchObject({ duplicate: false });
    await publish({ channel: c, type: 't', data: 'by backend' }, SERVER, deps);
    await expect(publish({ channel: c, type: 't', data: 2 }, alice, deps)).resolves.toMatchObject({ duplicate: false });
  });

  test('a channel whose history expired is not new (its last id outlives the history)', async () => {
    const { keys, deps } = isolated({ userNewChannelsPerHour: 1 });
    const alice = user();
    const a = `chat:${uid()}`;
    await publish({ channel: a, type: 't', data: 1 }, alice, deps);
    await redis.del(keys.history(a));
    await expect(publish({ channel: a, type: 't', data: 2 }, alice, deps)).resolves.toMatchObject({ duplicate: false });
    await expect(publish({ channel: `chat:${uid()}`, type: 't', data: 1 }, alice, deps)).rejects.toMatchObject({ code: 'channel_quota_exceeded' });
  });
});

describe('retained bytes per user (USER_RETAINED_BYTES, issue 20 item 6)', () => {
  const big = (n: number) => 'x'.repeat(n);

  test('a user past the budget: retained_bytes_exceeded 429, nothing written; backends and other users unaffected', async () => {
    // 100 KB per user and namespace per history TTL: three events of about 32 KB fit, the fourth does not.
    const { prefix, deps } = isolated({ userRetainedBytes: 100_000 });
    const alice = user();
    const channels = [`chat:${uid()}`, `chat:${uid()}`];
    for (let i = 0; i < 3; i++) await publish({ channel: channels[i % 2], type: 't', data: big(32_000) }, alice, deps);
    const before = await keysUnder(prefix);
    const state = await channelAsIs(prefix, channels[0]);
    await expect(publish({ channel: channels[0], type: 't', data: big(32_000) }, alice, deps)).rejects.toMatchObject({
      code: 'retained_bytes_exceeded',
      status: 429,
      message: expect.stringMatching(/keeps at most 100000 bytes of events per user in namespace "chat"/),
    });
    expect(await channelRecord(redis, prefix, TEST_NAMESPACES, channels[0])).toEqual(state);
    expect(await keysUnder(prefix)).toEqual(before);
    // A small event still fits; another user and a backend have budgets of their own (backends: none).
    await expect(publish({ channel: channels[0], type: 't', data: 'short' }, alice, deps)).resolves.toMatchObject({ duplicate: false });
    await expect(publish({ channel: channels[0], type: 't', data: big(32_000) }, user(), deps)).resolves.toMatchObject({ duplicate: false });
    for (let i = 0; i < 5; i++) await publish({ channel: channels[1], type: 't', data: big(32_000) }, SERVER, deps);
  });

  test('one publish no longer keeps a channel\'s old events alive: events older than the history TTL leave at the next publish, and a resume before them is reset', async () => {
    const { keys, deps } = isolated();
    const alice = user();
    const channel = `chat:${uid()}`;
    const old = await publish({ channel, type: 't', data: big(30_000) }, alice, deps);
    await publish({ channel, type: 't', data: big(30_000) }, alice, deps);
    // Make the two events an hour and a minute old: rewrite their ids (Redis time in microseconds) into the past.
    const hourAgo = Number(old.id) - 3660 * 1_000_000;
    const entries = await redis.xrange(keys.history(channel), '-', '+');
    await redis.del(keys.history(channel));
    for (const [i, [, fields]] of entries.entries()) await redis.xadd(keys.history(channel), `${hourAgo + i}-0`, ...fields);
    await redis.set(keys.lastId(channel), String(hourAgo + 1));
    const keep = await publish({ channel, type: 't', data: 'keep-alive' }, alice, deps);
    expect((await redis.xrange(keys.history(channel), '-', '+')).map((e) => e[0])).toEqual([`${keep.id}-0`]);
    expect(await redis.get(keys.horizon(channel))).toBe(String(hourAgo + 1));
  });
});

describe('idempotency keys belong to their principal', () => {
  test('a user cannot squat a backend key: same key, different principals, independent events', async () => {
    const { keys, deps } = isolated();
    const alice = user();
    const channel = `chat:${uid()}`;
    const squat = await publish({ channel, type: 't', data: 'squat', idempotencyKey: 'order-42' }, alice, deps);
    const real = await publish({ channel, type: 't', data: 'real', idempotencyKey: 'order-42' }, SERVER, deps);
    expect(squat.duplicate).toBe(false);
    expect(real.duplicate).toBe(false);
    expect(real.id).not.toBe(squat.id);
    expect((await redis.xrange(keys.history(channel), '-', '+')).map((e) => JSON.parse(e[1][1]).data)).toEqual(['squat', 'real']);
    // Each principal's retry still finds its own first id.
    await expect(publish({ channel, type: 't', data: 'real', idempotencyKey: 'order-42' }, SERVER, deps)).resolves.toEqual({ id: real.id, channel, duplicate: true });
    await expect(publish({ channel, type: 't', data: 'squat', idempotencyKey: 'order-42' }, alice, deps)).resolves.toEqual({ id: squat.id, channel, duplicate: true });
    // Two users are independent too.
    await expect(publish({ channel, type: 't', data: 'squat', idempotencyKey: 'order-42' }, user(), deps)).resolves.toMatchObject({ duplicate: false });
  });

  test('same key, different event (data or type) on the channel: idempotency_conflict 409, nothing published', async () => {
    const { prefix, deps } = isolated();
    const channel = `chat:${uid()}`;
    const first = await publish({ channel, type: 't', data: { n: 1 }, idempotencyKey: 'k' }, SERVER, deps);
    const before = await keysUnder(prefix);
    const state = await channelAsIs(prefix, channel);
    for (const other of [
      { channel, type: 't', data: { n: 2 } },
      { channel, type: 'u', data: { n: 1 } },
    ]) {
      await expect(publish({ ...other, idempotencyKey: 'k' }, SERVER, deps)).rejects.toMatchObject({
        code: 'idempotency_conflict',
        status: 409,
        message: expect.stringContaining(`already used for a different event (id ${first.id})`),
      });
    }
    expect(await channelRecord(redis, prefix, TEST_NAMESPACES, channel)).toEqual(state);
    expect(await keysUnder(prefix)).toEqual(before);
    await expect(publish({ channel, type: 't', data: { n: 1 }, idempotencyKey: 'k' }, SERVER, deps)).resolves.toEqual({ id: first.id, channel, duplicate: true });
  });

  test('a key is scoped to its channel (it lives in the channel\'s hash slot): the same key on another channel is another event', async () => {
    const { deps } = isolated();
    const channel = `chat:${uid()}`;
    const first = await publish({ channel, type: 't', data: 1, idempotencyKey: 'k' }, SERVER, deps);
    const other = `chat:${uid()}`;
    const second = await publish({ channel: other, type: 't', data: 1, idempotencyKey: 'k' }, SERVER, deps);
    expect(second).toMatchObject({ channel: other, duplicate: false });
    expect(second.id).not.toBe(first.id);
    await expect(publish({ channel: other, type: 't', data: 1, idempotencyKey: 'k' }, SERVER, deps)).resolves.toEqual({ id: second.id, channel: other, duplicate: true });
  });
});

describe('environment', () => {
  test('USER_PUBLISH_PER_MINUTE and USER_NEW_CHANNELS_PER_HOUR: defaults 300 and 50, one line per bad key', () => {
    expect(coreConfigFromEnv({})).toMatchObject({ userPublishPerMinute: 300, userNewChannelsPerHour: 50 });
    expect(coreConfigFromEnv({ USER_PUBLISH_PER_MINUTE: '0', USER_NEW_CHANNELS_PER_HOUR: '7' })).toMatchObject({ userPublishPerMinute: 0, userNewChannelsPerHour: 7 });
    const bad = () => coreConfigFromEnv({ USER_PUBLISH_PER_MINUTE: 'lots', USER_NEW_CHANNELS_PER_HOUR: '-1' });
    expect(bad).toThrow(ConfigError);
    expect(bad).toThrow(/^Invalid configuration: USER_PUBLISH_PER_MINUTE: [^;\n]+; USER_NEW_CHANNELS_PER_HOUR: [^;\n]+$/);
  });
});
