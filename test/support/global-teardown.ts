import type { RedisServer } from '../../local/redis';

export default async function globalTeardown(): Promise<void> {
  await (globalThis as { __redisServer?: RedisServer }).__redisServer?.destroy();
}
