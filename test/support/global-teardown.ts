import type { RedisCluster, RedisServer } from '../../local/redis';

export default async function globalTeardown(): Promise<void> {
  const g = globalThis as { __redisServer?: RedisServer; __redisCluster?: RedisCluster };
  await g.__redisServer?.destroy();
  await g.__redisCluster?.destroy();
}
