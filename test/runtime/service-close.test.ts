import type Redis from 'ioredis';
import { connectRedis, eventually, startService, useRedis } from '../support/harness';

/**
 * `RealtimeServer.close()` ends the Redis clients the server made itself, and only those: a client passed in is its
 * caller's. A server given only its command client makes its own subscriber, which it must close too; left open, it
 * kept reconnecting once Redis was gone (every 2 s, forever), which held the process (jest in band did not exit).
 */
let redis: Redis;
useRedis((r) => (redis = r));

/** The connections Redis has under `name` (CLIENT SETNAME, which the service's clients set). */
async function named(name: string): Promise<number> {
  const list = (await redis.client('LIST')) as string;
  return list.split('\n').filter((l) => l.includes(` name=${name} `)).length;
}

test('a server given its command client closes the subscriber it made, and leaves the given client open', async () => {
  const client = await connectRedis();
  const before = await named('sse-subscriber');
  const { service } = await startService({}, { redis: client });
  await eventually(async () => (await named('sse-subscriber')) === before + 1, 10_000, 'the service’s own subscriber');
  await service.close();
  await eventually(async () => (await named('sse-subscriber')) === before, 10_000, 'the service’s subscriber closed');
  expect(await client.ping()).toBe('PONG');
  client.disconnect();
});
