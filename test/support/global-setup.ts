import { RedisServer } from '../../local/redis';

/** Starts one private redis-server for the runtime suite unless REDIS_URL points at one. */
export default async function globalSetup(): Promise<void> {
  // The suites share one Redis and reuse user names ("alice"): a per-user ticket rate would count every
  // suite's tickets together. Tests of USER_TICKETS_PER_MINUTE set it themselves (test/runtime/client-caps.test.ts).
  process.env.USER_TICKETS_PER_MINUTE ??= '0';
  // Likewise USER_CONNECTIONS, which on API Gateway counts a user's registered connections in that shared Redis.
  // Tests of it set it themselves (test/runtime/client-caps.test.ts).
  process.env.USER_CONNECTIONS ??= '0';
  if (process.env.REDIS_URL) return;
  const server = await RedisServer.start();
  process.env.REDIS_URL = server.url;
  (globalThis as { __redisServer?: RedisServer }).__redisServer = server;
}
