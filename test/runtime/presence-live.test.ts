import type Redis from 'ioredis';
import type { Namespaces } from '../../core/config';
import { gatewayJoin } from '../../core/presence-gateway';
import { Keys } from '../../core/redis/keys';
import { RedisSubscriber } from '../../core/redis/subscriber';
import { connectSubscriber, coreConfig, eventually, RawStream, startService, TEST_NAMESPACES, ticketFor, uid, useRedis } from '../support/harness';

/**
 * Issue 24, item 6 (one node and the sharded Redis of 5/9): presence events go out live like any event, with the
 * publish command of the client (`SPUBLISH` on a Redis Cluster, where the tasks' hubs `SSUBSCRIBE`). Run by
 * `npm run test:cluster` on a local three-primary cluster (REDIS_CLUSTER=1), and on one node by `npm test`. The joins
 * go through the production call sites: the API Gateway path (`gatewayJoin`, core/presence-gateway.ts) and a task's
 * sessions (service/realtime-server.ts).
 */
const NAMESPACES: Namespaces = {
  ...TEST_NAMESPACES,
  room: { subscribe: 'authenticated', publish: 'authenticated', historySize: 100, historyTtlSeconds: 600, presence: 'members' },
};
let redis: Redis;
const cleanup = useRedis((r) => (redis = r));

test('a presence.join made on the API Gateway path reaches a subscriber of the channel live', async () => {
  const prefix = `pl${uid()}:`;
  const config = coreConfig({ keyPrefix: prefix, namespaces: NAMESPACES });
  const room = `room:${uid()}`;
  const conn = await connectSubscriber('presence-live');
  cleanup.push(() => conn.disconnect());
  const subscriber = new RedisSubscriber(conn, new Keys(prefix));
  const heard: string[] = [];
  subscriber.onMessage((channel, envelope) => {
    if (channel === room) heard.push(envelope);
  });
  await subscriber.subscribe([room]);
  await gatewayJoin('c1', 'ann', [room], { redis, config });
  await eventually(() => heard.length > 0, 10_000, 'the join, live');
  expect(heard.map((e) => JSON.parse(e) as { type: string; data: unknown })).toEqual([expect.objectContaining({ type: 'presence.join', data: { sub: 'ann' } })]);
});

test("a task's SSE reader hears another user's presence.join live", async () => {
  const prefix = `pl${uid()}:`;
  const config = coreConfig({ keyPrefix: prefix, namespaces: NAMESPACES });
  const { service, base } = await startService({ KEY_PREFIX: prefix, NAMESPACES_JSON: JSON.stringify(NAMESPACES), METRICS_INTERVAL_MS: '0' }, { eventTimers: false });
  cleanup.push(() => service.close());
  const room = `room:${uid()}`;
  const open = async (sub: string) => {
    const s = new RawStream(`${base}/events?channels=${room}&ticket=${await ticketFor(redis, sub, [room], 'sse', config)}`);
    cleanup.push(() => s.close());
    await s.until(() => s.events().some((e) => e.event === 'ready'));
    return s;
  };
  const ann = await open('ann');
  await open('bob');
  await ann.until(() => ann.events().some((e) => e.event === 'presence.join' && e.data.includes('"sub":"bob"')), 10_000);
});
