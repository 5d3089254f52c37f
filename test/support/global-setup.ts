import { RedisCluster, RedisServer } from '../../local/redis';

/**
 * Starts one private redis-server for the runtime suite unless REDIS_URL points at one. With `REDIS_CLUSTER=1`, a
 * local Redis Cluster instead (three primaries, one replica each): REDIS_URL names one of its primaries and REDIS_MODE
 * is `cluster`, so the harness (`connectRedis`, `startService`, `spawnTask`) hands the suites cluster clients and a
 * service configured for it (issue 23, item 6).
 */
export default async function globalSetup(): Promise<void> {
  // The suites share one Redis and reuse user names ("alice"): a per-user ticket rate would count every
  // suite's tickets together. Tests of USER_TICKETS_PER_MINUTE set it themselves (test/runtime/client-caps.test.ts).
  process.env.USER_TICKETS_PER_MINUTE ??= '0';
  // Likewise USER_CONNECTIONS, which on API Gateway counts a user's registered connections in that shared Redis.
  // Tests of it set it themselves (test/runtime/client-caps.test.ts).
  process.env.USER_CONNECTIONS ??= '0';
  if (process.env.REDIS_URL) return;
  if (process.env.REDIS_CLUSTER === '1') {
    const cluster = await RedisCluster.start({ primaries: 3, replicasPerPrimary: 1 });
    const primary = cluster.topology().find((n) => n.role === 'primary')!;
    process.env.REDIS_URL = `redis://127.0.0.1:${primary.port}`;
    process.env.REDIS_MODE = 'cluster';
    (globalThis as { __redisCluster?: RedisCluster }).__redisCluster = cluster;
    return;
  }
  const server = await RedisServer.start();
  process.env.REDIS_URL = server.url;
  (globalThis as { __redisServer?: RedisServer }).__redisServer = server;
}
