import { parseChannel } from '../../core/channels';
import type { Namespaces } from '../../core/config';
import { preparePublish } from '../../core/events';
import { RedisChannelBroker } from '../../core/redis/channel-broker';
import { Keys } from '../../core/redis/keys';
import { coreConfig, TEST_NAMESPACES, uid } from '../support/harness';
import { usePrivateRedis } from '../support/private-redis';

/**
 * What one publish asks of Redis, counted (INFO commandstats of a private redis-server, so no other suite's commands
 * are in it), not timed: the publish script's cost (docs/BENCHMARKS.md, "Why a publish cost 58.5 µs"). On a channel
 * whose history is full and holds nothing older than its TTL, a publish runs 12 commands and never looks for aged
 * entries backwards (`XREVRANGE` from below the stream's first entry walks the whole stream: 34-99 µs of a 76 µs
 * script before, measured).
 */
const NAMESPACES: Namespaces = { ...TEST_NAMESPACES, brief: { subscribe: 'public', publish: 'server', historySize: 10, historyTtlSeconds: 60 } };
const SERVER = { kind: 'server', principal: 'test' } as const;

const local = usePrivateRedis();

async function commandCalls(): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const m of (await local.redis.info('commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out.set(m[1], Number(m[2]));
  return out;
}

test('a publish to a full history with nothing aged: 12 commands, no backwards scan of the stream', async () => {
  const { redis, server } = local;
  const config = coreConfig({ redisUrl: server.url, namespaces: NAMESPACES });
  const broker = new RedisChannelBroker(redis, config);
  const channel = parseChannel(`brief:${uid()}`, NAMESPACES);
  const keys = new Keys(config.keyPrefix);
  const publish = async (n: number) => {
    const { head, tail } = preparePublish({ channel: channel.channel, type: 't', data: n }, SERVER, config);
    expect(await broker.publish({ channel, head, tail })).toMatchObject({ kind: 'published' });
  };
  for (let i = 0; i < 12; i++) await publish(i);
  expect(await redis.xlen(keys.history(channel.channel))).toBe(10);
  await redis.config('RESETSTAT');
  for (let i = 0; i < 20; i++) await publish(i);
  const calls = await commandCalls();
  expect(calls.get('evalsha')).toBe(20);
  expect(calls.get('xrevrange') ?? 0).toBe(0);
  const inScript = [...calls].filter(([name]) => !['evalsha', 'eval', 'config|resetstat', 'info'].includes(name));
  expect(Object.fromEntries(inScript)).toEqual({ time: 20, get: 20, zrange: 20, set: 40, expire: 60, xlen: 20, xrange: 20, xadd: 20, publish: 20 });
  // Still trimmed to its size, the horizon just below what the history holds.
  const held = (await redis.xrange(keys.history(channel.channel), '-', '+')).map((e) => Number(e[0].split('-')[0]));
  expect(held).toHaveLength(10);
  const horizon = Number(await redis.get(keys.horizon(channel.channel)));
  expect(horizon).toBeLessThan(held[0]);
  expect(horizon).toBeGreaterThan(held[0] - 1_000_000);
});
