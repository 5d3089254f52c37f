import { Cluster } from 'ioredis';
import { useRedisCluster } from '../support/harness';

/**
 * The local Redis Cluster of the harness (issue 23, item 6): three primaries with one replica each on free ports,
 * made by `redis-cli --cluster create`, stopped after the file.
 */
const local = useRedisCluster();

test('three primaries share the 16384 slots, each with one replica', () => {
  const nodes = local.cluster.topology();
  const primaries = nodes.filter((n) => n.role === 'primary');
  expect(primaries).toHaveLength(3);
  expect(primaries.reduce((k, n) => k + n.slots.reduce((m, [a, b]) => m + b - a + 1, 0), 0)).toBe(16384);
  for (const p of primaries) expect(nodes.filter((n) => n.primaryId === p.id)).toHaveLength(1);
});

test('a cluster client reads and writes keys on every shard', async () => {
  const client = new Cluster(local.cluster.nodes.slice(0, 1), { redisOptions: { maxRetriesPerRequest: 1 } });
  try {
    // foo, bar and baz hash to slots 12182, 5061 and 4813: at least two shards.
    const owners = new Set<number>();
    for (const k of ['foo', 'bar', 'baz', 'a', 'b', 'c']) {
      await client.set(k, k);
      expect(await client.get(k)).toBe(k);
      owners.add(local.cluster.primaryOf(Number(await client.cluster('KEYSLOT', k))).port);
    }
    expect(owners.size).toBe(3);
  } finally {
    client.disconnect();
  }
});

test('a killed primary is replaced by its replica, which keeps the data', async () => {
  const client = new Cluster(local.cluster.nodes.slice(0, 1), { redisOptions: { maxRetriesPerRequest: 1 } });
  try {
    await client.set('kept', 'yes');
    await client.wait(1, 5000);
    const owner = local.cluster.primaryOf(Number(await client.cluster('KEYSLOT', 'kept')));
    const promoted = await local.cluster.killPrimary(owner.port);
    expect(promoted).not.toBe(owner.port);
    expect(local.cluster.primaryOf(Number(await client.cluster('KEYSLOT', 'kept'))).port).toBe(promoted);
    await local.cluster.server(owner.port).restart();
    await local.cluster.waitHealthy();
    expect(await client.get('kept')).toBe('yes');
  } finally {
    client.disconnect();
  }
});
