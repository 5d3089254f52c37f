import type Redis from 'ioredis';
import { RedisServer } from '../../local/redis';
import { connectRedis } from './harness';

/**
 * A redis-server of the suite's own (started in beforeAll, stopped in afterAll) and a connection to it: for tests that
 * change the server's configuration (maxmemory) or read its statistics (commandstats), which other suites sharing the
 * test Redis would disturb.
 */
export function usePrivateRedis(): { readonly server: RedisServer; readonly redis: Redis } {
  const held: { server?: RedisServer; redis?: Redis } = {};
  beforeAll(async () => {
    held.server = await RedisServer.start();
    held.redis = await connectRedis(held.server.url);
  });
  afterAll(async () => {
    held.redis?.disconnect();
    await held.server?.stop();
  });
  return {
    get server() {
      return held.server!;
    },
    get redis() {
      return held.redis!;
    },
  };
}
