import type Redis from 'ioredis';
import type { BrokerPageBudget, BrokerPublish, ChannelCursor, PositionBroker } from '../../core/broker';
import { parseChannel, type ParsedChannel } from '../../core/channels';
import { claimCursor, currentCursor, publish, replay } from '../../core/events';
import { publishAndFanout } from '../../core/publishing';
import { RedisChannelBroker } from '../../core/redis/channel-broker';
import { connectRedis, coreConfig, TEST_NAMESPACES, uid } from '../support/harness';

/**
 * The broker seam (`core/broker.ts`): publish, replay and the cursor calls of `core/events.ts` and `core/publishing.ts`
 * go through the deps' broker when one is given, so a second implementation (a sharded broker) or a different
 * configuration of the Redis one is chosen by the caller, not by editing the domain. Real Redis throughout: the
 * broker given is the Redis one under another key prefix, seen through a wrapper that counts the calls.
 */
let redis: Redis;
beforeAll(async () => {
  redis = await connectRedis();
});
afterAll(() => redis.disconnect());

const SERVER = { kind: 'server', principal: 'test' } as const;

class Counting implements PositionBroker {
  readonly calls: string[] = [];
  constructor(private readonly inner: PositionBroker) {}
  publish(p: BrokerPublish) {
    this.calls.push('publish');
    return this.inner.publish(p);
  }
  replay(reads: readonly ChannelCursor[], budget: BrokerPageBudget) {
    this.calls.push('replay');
    return this.inner.replay(reads, budget);
  }
  claim(read: ChannelCursor) {
    this.calls.push('claim');
    return this.inner.claim(read);
  }
  positions(channels: readonly ParsedChannel[]) {
    this.calls.push('positions');
    return this.inner.positions(channels);
  }
}

test('events and publishing use the broker the deps name: its keys, not the config prefix, hold the event', async () => {
  const own = coreConfig({ keyPrefix: `own-${uid()}:` });
  const other = coreConfig({ keyPrefix: `other-${uid()}:` });
  const broker = new Counting(new RedisChannelBroker(redis, other));
  const deps = { redis, config: own, broker };
  const ch = parseChannel(`chat:${uid()}`, TEST_NAMESPACES);

  const first = await publish({ channel: ch.channel, type: 't', data: 1 }, SERVER, deps);
  const second = await publishAndFanout({ channel: ch.channel, type: 't', data: 2 }, SERVER, deps);
  expect(Number(second.id)).toBeGreaterThan(Number(first.id));

  // Through the broker: both events, and the position it keeps.
  const page = await replay([ch], [0], deps);
  expect(page.events.map((e) => JSON.parse(e).data)).toEqual([1, 2]);
  expect(await currentCursor([ch], deps)).toEqual([Number(second.id)]);
  expect(await claimCursor(ch, Number(second.id), deps)).toEqual({ reset: false, position: Number(second.id) });
  expect(broker.calls).toEqual(['publish', 'publish', 'replay', 'positions', 'claim']);

  // The same Redis under the broker's prefix has them; under the config's own prefix nothing was written.
  expect((await replay([ch], [0], { redis, config: other })).events).toHaveLength(2);
  expect(await currentCursor([ch], { redis, config: own })).toEqual([0]);
  expect(await redis.keys(`${own.keyPrefix}*`)).toEqual([]);
});

test('a refusal from the broker is the same error whichever broker gave it (idempotency conflict)', async () => {
  const config = coreConfig({ keyPrefix: `conf-${uid()}:` });
  const deps = { redis, config, broker: new RedisChannelBroker(redis, config) };
  const ch = `chat:${uid()}`;
  const a = await publish({ channel: ch, type: 't', data: 1, idempotencyKey: 'k1' }, SERVER, deps);
  expect(await publish({ channel: ch, type: 't', data: 1, idempotencyKey: 'k1' }, SERVER, deps)).toEqual({ id: a.id, channel: ch, duplicate: true });
  await expect(publish({ channel: ch, type: 't', data: 2, idempotencyKey: 'k1' }, SERVER, deps)).rejects.toMatchObject({ code: 'idempotency_conflict' });
});
