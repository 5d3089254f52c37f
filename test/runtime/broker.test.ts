import type Redis from 'ioredis';
import type { Broker, BrokerPageBudget, BrokerPublish } from '../../core/broker';
import { parseChannel, type ParsedChannel } from '../../core/channels';
import { claimCursor, currentCursor, publish, replay } from '../../core/events';
import { publishAndFanout } from '../../core/publishing';
import { RedisBroker } from '../../core/redis/broker';
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

class Counting implements Broker {
  readonly calls: string[] = [];
  constructor(private readonly inner: Broker) {}
  publish(p: BrokerPublish) {
    this.calls.push('publish');
    return this.inner.publish(p);
  }
  replay(channels: readonly ParsedChannel[], cursor: number, budget: BrokerPageBudget) {
    this.calls.push('replay');
    return this.inner.replay(channels, cursor, budget);
  }
  claimCursor(cursor: number) {
    this.calls.push('claimCursor');
    return this.inner.claimCursor(cursor);
  }
  currentCursor() {
    this.calls.push('currentCursor');
    return this.inner.currentCursor();
  }
}

test('events and publishing use the broker the deps name: its keys, not the config prefix, hold the event', async () => {
  const own = coreConfig({ keyPrefix: `own-${uid()}:` });
  const other = coreConfig({ keyPrefix: `other-${uid()}:` });
  const broker = new Counting(new RedisBroker(redis, other));
  const deps = { redis, config: own, broker };
  const ch = parseChannel(`chat:${uid()}`, TEST_NAMESPACES);

  const first = await publish({ channel: ch.channel, type: 't', data: 1 }, SERVER, deps);
  const second = await publishAndFanout({ channel: ch.channel, type: 't', data: 2 }, SERVER, deps);
  expect(Number(second.id)).toBeGreaterThan(Number(first.id));

  // Through the broker: both events, and the position it keeps.
  const page = await replay([ch], Number(first.id) - 1, deps);
  expect(page.events.map((e) => JSON.parse(e).data)).toEqual([1, 2]);
  expect(await currentCursor(deps)).toBe(Number(second.id));
  expect(await claimCursor(Number(second.id), deps)).toBe(false);
  expect(broker.calls).toEqual(['publish', 'publish', 'replay', 'currentCursor', 'claimCursor']);

  // The same Redis under the broker's prefix has them; under the config's own prefix nothing was written.
  expect((await replay([ch], Number(first.id) - 1, { redis, config: other })).events).toHaveLength(2);
  expect(await currentCursor({ redis, config: own })).toBe(0);
  expect(await redis.exists(`${own.keyPrefix}h:${ch.channel}`, `${own.keyPrefix}seq`)).toBe(0);
});

test('a refusal from the broker is the same error whichever broker gave it (idempotency conflict)', async () => {
  const config = coreConfig({ keyPrefix: `conf-${uid()}:` });
  const deps = { redis, config, broker: new RedisBroker(redis, config) };
  const ch = `chat:${uid()}`;
  const a = await publish({ channel: ch, type: 't', data: 1, idempotencyKey: 'k1' }, SERVER, deps);
  expect(await publish({ channel: ch, type: 't', data: 1, idempotencyKey: 'k1' }, SERVER, deps)).toEqual({ id: a.id, channel: ch, duplicate: true });
  await expect(publish({ channel: ch, type: 't', data: 2, idempotencyKey: 'k1' }, SERVER, deps)).rejects.toMatchObject({ code: 'idempotency_conflict' });
});
