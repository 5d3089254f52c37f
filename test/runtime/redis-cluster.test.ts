import { Cluster } from 'ioredis';
import { RedisCluster } from '../../local/redis';
import { connectRedis, onCluster, useRedisCluster } from '../support/harness';

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

test('one or two primaries (below what redis-cli --cluster create accepts) are joined by hand, replicas included', async () => {
  for (const primaries of [1, 2]) {
    const small = await RedisCluster.start({ primaries, replicasPerPrimary: 1 });
    try {
      const nodes = small.topology();
      const ps = nodes.filter((n) => n.role === 'primary');
      expect(ps).toHaveLength(primaries);
      expect(ps.reduce((k, n) => k + n.slots.reduce((m, [a, b]) => m + b - a + 1, 0), 0)).toBe(16384);
      for (const p of ps) expect(nodes.filter((n) => n.primaryId === p.id)).toHaveLength(1);
      const client = new Cluster(small.nodes.slice(0, 1), { redisOptions: { maxRetriesPerRequest: 1 } });
      try {
        for (const k of ['foo', 'bar', 'baz']) await client.set(k, k);
        expect(await client.mget('foo')).toEqual(['foo']);
      } finally {
        client.disconnect();
      }
    } finally {
      await small.destroy();
    }
  }
}, 90_000);

test('REDIS_CLUSTER=1 hands every suite the cluster of the global setup (connectRedis a cluster client, REDIS_MODE cluster); without it, one node', async () => {
  const r = await connectRedis();
  try {
    const clustered = process.env.REDIS_CLUSTER === '1';
    expect((r as unknown as Cluster).isCluster === true).toBe(clustered);
    expect(onCluster()).toBe(clustered);
    const info = await r.info('cluster');
    expect(info).toContain(`cluster_enabled:${clustered ? 1 : 0}`);
    if (clustered) expect((r as unknown as Cluster).nodes('master')).toHaveLength(3);
  } finally {
    r.disconnect();
  }
});
