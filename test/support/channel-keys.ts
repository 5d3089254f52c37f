import type Redis from 'ioredis';
import { parseChannel } from '../../core/channels';
import type { Namespaces } from '../../core/config';
import { RedisChannelBroker } from '../../core/redis/channel-broker';
import { Keys } from '../../core/redis/keys';

/**
 * What a publish that was refused (a limit, a conflict, Redis out of memory) must leave of a channel as it was, per
 * channel (docs/DESIGN.md, "Positions per channel"): its position (what the next id is above), its base (its epoch),
 * horizon, gap, last id, lost ranges and history, and the lifetimes of those keys (a refused publish that refreshed them
 * would keep a channel's markers alive, or let its history outlive them).
 *
 * Lifetimes are checked without reading the clock: {@link holdChannelTtls} first sets every existing key's TTL to
 * {@link HELD_TTL_MS}, below any TTL a publish writes in the namespaces the tests use (the shortest history TTL of
 * TEST_NAMESPACES is 600 s, the markers' a week more), so a refreshed key is one whose TTL is above it.
 */
export const HELD_TTL_MS = 50_000;

const names = (keys: Keys, channel: string) => ({
  history: keys.history(channel),
  horizon: keys.horizon(channel),
  gap: keys.gap(channel),
  lastId: keys.lastId(channel),
  base: keys.base(channel),
  lostRanges: keys.lostRanges(channel),
});

/** Sets the TTL of each of the channel's keys that exists to {@link HELD_TTL_MS}. */
export async function holdChannelTtls(redis: Redis, prefix: string, channel: string): Promise<void> {
  for (const key of Object.values(names(new Keys(prefix), channel))) await redis.pexpire(key, HELD_TTL_MS);
}

/**
 * The channel's state: position (the broker's `positions`), each marker's value (null when absent), the history's
 * ids, and the keys whose TTL is above {@link HELD_TTL_MS} (refreshed since {@link holdChannelTtls}) or none.
 */
export async function channelRecord(redis: Redis, prefix: string, namespaces: Namespaces, channel: string) {
  const keys = new Keys(prefix);
  const k = names(keys, channel);
  const [position] = await new RedisChannelBroker(redis, { keyPrefix: prefix }).positions([parseChannel(channel, namespaces)]);
  const refreshed: string[] = [];
  for (const [name, key] of Object.entries(k)) {
    const ttl = await redis.pttl(key);
    if (ttl === -1 || ttl > HELD_TTL_MS) refreshed.push(name);
  }
  return {
    position,
    horizon: await redis.get(k.horizon),
    gap: await redis.get(k.gap),
    lastId: await redis.get(k.lastId),
    base: await redis.get(k.base),
    lostRanges: await redis.zrange(k.lostRanges, 0, -1, 'WITHSCORES'),
    history: (await redis.xrange(k.history, '-', '+')).map((e) => e[0]),
    refreshed,
  };
}
