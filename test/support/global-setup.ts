import { RedisServer } from '../../local/redis';

/** Starts one private redis-server for the runtime suite unless REDIS_URL points at one. */
export default async function globalSetup(): Promise<void> {
  if (process.env.REDIS_URL) return;
  const server = await RedisServer.start();
  process.env.REDIS_URL = server.url;
  (globalThis as { __redisServer?: RedisServer }).__redisServer = server;
}
