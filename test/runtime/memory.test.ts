import type Redis from 'ioredis';
import { registerConnection, connectionKey, subscribersKey } from '../../core/connections';
import { publish } from '../../core/events';
import { Keys, sha256 } from '../../core/redis/keys';
import { envelopeBytes, estimateChannel, estimateConnection, estimateTicket, historyBytes, KEY_BOOKKEEPING_BYTES, stringKeyBytes, subscriberSetBytes } from '../../core/redis/memory';
import { issueTicket } from '../../core/tickets';
import { connectRedis, coreConfig, TEST_NAMESPACES, uid } from '../support/harness';

/** The estimates must stay within this fraction of what Redis reports. */
const TOLERANCE = 0.1;
const SERVER = { kind: 'server', principal: 'arn:aws:iam::123456789012:role/backend' } as const;

let redis: Redis;
beforeAll(async () => {
  redis = await connectRedis();
});
afterAll(() => redis.disconnect());

const usage = async (key: string) => Number(await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0'));
const close = (estimate: number, real: number) => {
  expect(real).toBeGreaterThan(0);
  expect(Math.abs(estimate - real) / real).toBeLessThanOrEqual(TOLERANCE);
};

function isolated(historySize: number) {
  const prefix = `m${uid()}:`;
  const namespaces = { ...TEST_NAMESPACES, room: { subscribe: 'authenticated', publish: 'authenticated', historySize, historyTtlSeconds: 3600 } } as const;
  return { prefix, keys: new Keys(prefix), deps: { redis, config: coreConfig({ keyPrefix: prefix, namespaces }) } };
}

describe('memory estimates against MEMORY USAGE of the keys a real publish, registration and ticket create', () => {
  // Ids are Redis time in µs, so an entry's size depends on the time since its node's first entry. The test sets the
  // channel's last id before each publish (far ahead of Redis time, where a publish takes last id + 1) so that ids are
  // exactly `gap` apart: the estimate is then checked against a known gap, however fast or loaded the machine is.
  test.each([
    [200, 1, 10, 1],
    [200, 300, 100, 1],
    [200, 300, 100, 1_000_000],
    [200, 300, 1000, 1000],
    [200, 250, 32000, 1_000_000],
    [1000, 1500, 200, 1],
    [1000, 1500, 200, 1_000_000],
    [1000, 1500, 200, 500],
    [100, 150, 5000, 1000],
  ])('history of %i, %i events published, %i B of data, ids %i µs apart: stream and markers within 10%%', async (historySize, published, dataBytes, gap) => {
    const { keys, deps } = isolated(historySize);
    const channel = `room:${uid()}`;
    const data = 'x'.repeat(dataBytes);
    const [sec] = await redis.time();
    const base = (Number(sec) + 2 * 3600) * 1_000_000;
    let n = 0;
    const publishNext = async () => {
      // Ids per channel: one more than the channel's last id when that is ahead of Redis time (two hours ahead here).
      await redis.set(keys.lastId(channel), String(base + n++ * gap - 1));
      return publish({ channel, type: 'message', data }, SERVER, deps);
    };
    for (let i = 0; i < published; i++) expect((await publishNext()).id).toBe(String(base + (n - 1) * gap));
    if (published > historySize) {
      // Make the gap marker exist too (what a history that expired and came back leaves).
      await redis.del(keys.history(channel));
      for (let i = 0; i < published; i++) await publishNext();
    }
    const env = envelopeBytes(channel.length, 'message'.length, dataBytes + 2);
    // Every envelope here names a 16-digit predecessor (the channel's last id is set before each publish).
    expect((await redis.xrange(keys.history(channel), '-', '+', 'COUNT', 1))[0][1][1]).toHaveLength(env);
    const kept = Math.min(historySize, published);
    close(historyBytes(keys.history(channel).length, kept, env, published, gap), await usage(keys.history(channel)));
    const est = estimateChannel({ prefixLength: keys.prefix.length, channelLength: channel.length, historySize: kept, envelopeBytes: env, published });
    const markers = [keys.lastId(channel), keys.horizon(channel), keys.gap(channel)];
    if (published > historySize) {
      close(est.markers, (await Promise.all(markers.map(usage))).reduce((a, b) => a + b));
    } else {
      close(stringKeyBytes(keys.lastId(channel).length, 'int'), await usage(keys.lastId(channel)));
    }
  });

  test('idempotency key: within 10%', async () => {
    const { keys, deps } = isolated(10);
    const channel = `room:${uid()}`;
    await publish({ channel, type: 'message', data: 1, idempotencyKey: `order-${uid()}` }, SERVER, deps);
    const [key] = await redis.keys(`${keys.prefix}idem:*`);
    const est = estimateChannel({ prefixLength: keys.prefix.length, channelLength: channel.length, historySize: 10, envelopeBytes: 100 });
    close(est.perIdempotencyKey - KEY_BOOKKEEPING_BYTES, await usage(key));
  });

  test.each([[1], [2], [4], [16]])('WebSocket connection with %i channels: record and subscriber-set members within 10%%', async (n) => {
    const { keys, deps } = isolated(10);
    const sub = `auth0|${uid()}${uid()}`;
    const channels = Array.from({ length: n }, () => `room:${uid()}`);
    // Floors are then 16-digit ids (each channel's position), as on channels that have events.
    for (const channel of channels) await publish({ channel, type: 'message', data: 1 }, SERVER, deps);
    const ids = Array.from({ length: 20 }, () => `${uid()}${uid()}`.slice(0, 15) + '='); // API Gateway ids are 16 chars
    for (const id of ids) await registerConnection(id, { sub, grant: channels, channels }, deps);
    const est = estimateConnection({ prefixLength: keys.prefix.length, subLength: sub.length, channelLengths: channels.map((c) => c.length) });
    close(est.record, await usage(connectionKey(keys, ids[0])));
    // Each channel's subscriber set now holds the 20 connections.
    for (const c of channels) close(subscriberSetBytes(subscribersKey(keys, c).length, 20, 16), await usage(subscribersKey(keys, c)));
  });

  test.each([[1], [4], [16]])('ticket for %i channels: within 10%%', async (n) => {
    const { keys, deps } = isolated(10);
    const sub = `auth0|${uid()}${uid()}`;
    const channels = Array.from({ length: n }, () => `room:${uid()}`);
    await issueTicket({ identity: { kind: 'user', sub }, channels }, deps);
    const [key] = await redis.keys(`${keys.prefix}tk:*`);
    expect(key).toHaveLength(keys.ticket(sha256('x')).length);
    close(estimateTicket({ prefixLength: keys.prefix.length, subLength: sub.length, channelLengths: channels.map((c) => c.length) }) - KEY_BOOKKEEPING_BYTES, await usage(key));
  });
});
