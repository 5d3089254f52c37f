import { LAST_ID_TAIL_SECONDS, type CoreConfig } from '../config';
import { ENVELOPE_ADDED_BYTES, IDEMPOTENCY_TTL_SECONDS, REPLAY_FRAME_BYTES, type BrokerPublish, type BrokerPublishOutcome } from '../broker';
import { isCluster, Script, type RedisLike } from './client';
import { Keys } from './keys';

/**
 * What the Redis broker (`channel-broker.ts`, positions per channel) builds on: a channel's history is a stream, its
 * live events a pub/sub channel, and each operation one Lua script, so history and live delivery never disagree. Here:
 * the Lua shared by its scripts (lost ranges, the publish steps, a page's budget) and a user's publish limits, which
 * live in the user's slot and run as their own scripts around a channel's publish.
 *
 * What a replay needs to prove a cursor is covered, kept beside the stream:
 * - the channel's last id (`hl:`), which outlives the history by {@link LAST_ID_TAIL_SECONDS}, so a history that
 *   expired or was evicted is still known to have existed;
 * - when the history is full, the id of the newest event trimmed from it (the horizon, `hx:`);
 * - when the stream is created again after it expired or was evicted, the last id before that (the gap, `hg:`): what
 *   the stream holds now starts after it.
 * Horizon and gap are refreshed with the last id, so they live exactly as long as it does. An event leaves the history
 * once it is older than the history TTL: each publish trims by id (`MINID`, ids being Redis time) as well as by count.
 */

/** Lost ranges remembered (the newest); a reader in an older one resumes without a reset. */
export const LOST_RANGES_KEPT = 64;

/**
 * Lua: `markLost(key, from, to)` records that ids in (from, to] may have been issued and then lost (a failover rolled
 * a channel back): a reader whose cursor lies in that range must reset. Ranges live in a sorted set (member
 * `from to`, score `to`); a new range is merged only with ranges it overlaps or touches (no id was issued between
 * them), so ids issued between two losses stay valid. The newest {@link LOST_RANGES_KEPT} are kept.
 * `isLost(key, cursor)` tells whether a cursor lies in a recorded range.
 */
export const MARK_LOST = `
local function markLost(key, from, to)
  local f, t = tonumber(from), tonumber(to)
  local near = redis.call('ZRANGEBYSCORE', key, string.format('%.0f', f - 1), '+inf')
  for _, m in ipairs(near) do
    local a, b = string.match(m, '^(%d+) (%d+)$')
    a, b = tonumber(a), tonumber(b)
    if a and a <= t + 1 then
      if a < f then f = a end
      if b > t then t = b end
      redis.call('ZREM', key, m)
    end
  end
  local ts = string.format('%.0f', t)
  redis.call('ZADD', key, ts, string.format('%.0f', f) .. ' ' .. ts)
  redis.call('ZREMRANGEBYRANK', key, 0, -${LOST_RANGES_KEPT + 1})
end
local function isLost(key, c)
  local r = redis.call('ZRANGEBYSCORE', key, string.format('%.0f', c), '+inf', 'LIMIT', 0, 1)
  if not r[1] then return false end
  local f = tonumber(string.match(r[1], '^(%d+) '))
  return f ~= nil and c > f
end
local function clockUs(t)
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end`;

/**
 * Lua of the publish script (`CHANNEL_PUBLISH` in `channel-broker.ts`), over
 * the ARGV they share (see {@link publishArgs}: ARGV[1] live channel, 2-3 envelope head and tail, 4 history size, 5
 * history TTL, 6 idempotency TTL, 7 use idempotency, 8 event hash, 9 markers' TTL, 14 the publish command).
 * `idempotent(key)`: the reply for an idempotency key already used ({id, 1} the same event, {id, 2} another), or nil.
 * `admit(idem, last id, history, horizon, last)`: that reply, or the user's refusal (ARGV[10], its seconds ARGV[11]), or
 * the channel quota's ({'', 4, seconds} for a new channel when ARGV[12] is '0'), else 1 for a new channel, 0 for another
 * (`last`: the channel's last id when the caller read it, so a channel that has one is not looked up again).
 * `envelope(t, id, prev)`: the envelope around the id and the time of `TIME` reply `t`, in milliseconds, ending with
 * `prev`: the channel's previous event id (its last id before this one, '0' when it has none), so a client can count
 * the events it missed between two it received (ids are Redis time per channel, not a count).
 * `append(history, horizon, gap, last, id, env, clock)`: appends the envelope to the history, trimming by count and
 * age and recording the horizon, or the gap when the stream was created again after it expired (`last`: the channel's
 * last id as a string, or nil). It reads the oldest entries once: those the count trims (the newest of them is the
 * horizon), else the oldest, whose age tells whether any entry is past the history TTL before that is looked up.
 * `finish(idemKey, id, env)`: live delivery, the idempotency key.
 */
export const PUBLISH_STEPS = `
local function idempotent(key)
  if ARGV[7] ~= '1' then return nil end
  local prev = redis.call('GET', key)
  if not prev then return nil end
  local sp = string.find(prev, ' ', 1, true)
  if not sp then return {prev, 1} end
  local pid = string.sub(prev, 1, sp - 1)
  if string.sub(prev, sp + 1) == ARGV[8] then return {pid, 1} end
  return {pid, 2}
end
local function admit(kIdem, kLast, kHist, kHorizon, last)
  local dup = idempotent(kIdem)
  if dup then return dup end
  if ARGV[10] ~= '0' then return {'', tonumber(ARGV[10]), tonumber(ARGV[11])} end
  if not last and redis.call('EXISTS', kLast, kHist, kHorizon) == 0 then
    if ARGV[12] == '0' then return {'', 4, tonumber(ARGV[13])} end
    return 1
  end
  return 0
end
local function envelope(t, id, prev)
  return ARGV[2] .. id .. ARGV[3] .. t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000)) .. ',"prev":"' .. (prev or '0') .. '"}'
end
local function append(kHist, kHorizon, kGap, last, id, env, clock)
  local size = tonumber(ARGV[4])
  local keep = ARGV[9]
  if size <= 0 then return end
  local len = redis.call('XLEN', kHist)
  local horizon
  if len == 0 and last then
    redis.call('SET', kGap, last, 'EX', keep)
    redis.call('DEL', kHorizon)
  elseif len > 0 then
    local drop = len - size + 1
    local oldest = redis.call('XRANGE', kHist, '-', '+', 'COUNT', math.max(drop, 1))
    if drop >= 1 then horizon = tonumber(string.match(oldest[#oldest][1], '^(%d+)')) end
    local minid = clock - tonumber(ARGV[5]) * 1000000
    if tonumber(string.match(oldest[1][1], '^(%d+)')) < minid then
      local m = string.format('%.0f', minid)
      local aged = redis.call('XREVRANGE', kHist, '(' .. m .. '-0', '-', 'COUNT', 1)
      local a = tonumber(string.match(aged[1][1], '^(%d+)'))
      if not horizon or a > horizon then horizon = a end
      redis.call('XTRIM', kHist, 'MINID', m .. '-0')
    end
    if horizon then redis.call('SET', kHorizon, string.format('%.0f', horizon), 'EX', keep) end
  end
  redis.call('XADD', kHist, 'MAXLEN', '=', size, id .. '-0', 'e', env)
  redis.call('EXPIRE', kHist, ARGV[5])
  if not horizon then redis.call('EXPIRE', kHorizon, keep) end
  redis.call('EXPIRE', kGap, keep)
end
local function finish(kIdem, id, env)
  redis.call(ARGV[14], ARGV[1], env)
  if ARGV[7] == '1' then redis.call('SET', kIdem, id .. ' ' .. ARGV[8], 'EX', ARGV[6]) end
end`;

/**
 * A user's publish limits, checked in the user's slot before CHANNEL_PUBLISH: events per one-minute window, and bytes per
 * namespace per window of one history TTL. Under both, the event and its bytes are counted at once (reserved: a
 * concurrent publish of the same user sees them) and 0 is returned with whether the user may start a new channel (its
 * counter is below the quota) and the seconds until it may; over either, nothing is written and the refusal (3 rate,
 * 5 bytes) is returned with its seconds.
 *
 * KEYS: user publish counter, user new-channel counter, user retained-bytes counter (one slot: tagged with the user)
 * ARGV: publishes per minute (0: unlimited), new channels per hour (0: unlimited), retained bytes (0: unlimited),
 *       the event's bytes, the retained-bytes window (the history TTL)
 * Returns {refusal, seconds, may start a channel 1|0, seconds until it may}.
 */
const USER_RESERVE = new Script(`
local function wait(key)
  local s = redis.call('TTL', key)
  if s < 1 then s = 1 end
  return s
end
local rate, quota, budget, bytes = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if rate > 0 and tonumber(redis.call('GET', KEYS[1]) or '0') >= rate then return {3, wait(KEYS[1]), 0, 0} end
if budget > 0 and tonumber(redis.call('GET', KEYS[3]) or '0') + bytes > budget then return {5, wait(KEYS[3]), 0, 0} end
local room, later = 1, 0
if quota > 0 and tonumber(redis.call('GET', KEYS[2]) or '0') >= quota then
  room = 0
  later = wait(KEYS[2])
end
if rate > 0 and redis.call('INCR', KEYS[1]) == 1 then redis.call('EXPIRE', KEYS[1], 60) end
if budget > 0 and redis.call('INCRBY', KEYS[3], bytes) == bytes then redis.call('EXPIRE', KEYS[3], ARGV[5]) end
return {0, 0, room, later}
`);

/**
 * After CHANNEL_PUBLISH, in the user's slot: counts the new channel it started, or gives back what USER_RESERVE reserved when
 * nothing was published (a duplicate, a conflict, the channel quota). A counter given back to zero is deleted, so a
 * refusal leaves the keys as they were.
 *
 * KEYS: as USER_RESERVE   ARGV: 1 to give back one event (else 0), bytes to give back (0: none), 1 to count a new channel
 */
const USER_SETTLE = new Script(`
if ARGV[1] == '1' and redis.call('DECR', KEYS[1]) <= 0 then redis.call('DEL', KEYS[1]) end
local b = tonumber(ARGV[2])
if b > 0 and redis.call('DECRBY', KEYS[3], b) <= 0 then redis.call('DEL', KEYS[3]) end
if ARGV[3] == '1' and redis.call('INCR', KEYS[2]) == 1 then redis.call('EXPIRE', KEYS[2], 3600) end
return 1
`);

/**
 * Lua of a replay page's budget (`CHANNEL_REPLAY`):
 * `maxN`, `maxB`, `unit` from ARGV[first], ARGV[first + 1], ARGV[first + 2] (max events, max bytes, entry bytes), the
 * page's `count`, `bytes` and `more`, and `fits(e)`, which counts stream entry `e` into the page when it fits (each
 * entry its envelope plus {@link REPLAY_FRAME_BYTES}; the first always fits) and otherwise sets `more`.
 */
export const pageBudget = (first: number): string => `
local maxN, maxB, unit = tonumber(ARGV[${first}]), tonumber(ARGV[${first + 1}]), tonumber(ARGV[${first + 2}])
local count, bytes, more = 0, 0, 0
local function fits(e)
  local size = #e[2][2] + ${REPLAY_FRAME_BYTES}
  if count >= maxN or (count > 0 and bytes + size > maxB) then
    more = 1
    return false
  end
  count = count + 1
  bytes = bytes + size
  return true
end`;

/** Every script of the broker, by name (for the cluster-slot audit in test/runtime/script-slots.test.ts). */
export const BROKER_SCRIPTS = { USER_RESERVE, USER_SETTLE } as const;

const PUBLISH_OUTCOME = { 3: 'rate_limited', 4: 'channel_quota_exceeded', 5: 'retained_bytes_exceeded' } as const;

/**
 * The ARGV a publish script takes after the live channel and before the user verdict: envelope head and tail, history
 * size, history TTL, idempotency TTL, use idempotency, event hash, last-id TTL.
 */
export function publishArgs(p: BrokerPublish): (string | number)[] {
  const policy = p.channel.policy;
  return [p.head, p.tail, policy.historySize, policy.historyTtlSeconds, IDEMPOTENCY_TTL_SECONDS, p.idempotency ? '1' : '0', p.idempotency?.eventHash ?? '', policy.historyTtlSeconds + LAST_ID_TAIL_SECONDS];
}

/**
 * A publish with a user's limits around it: USER_RESERVE in the user's slot first (when the user has limits), then
 * `run` (the channel's publish script, handed the verdict: refusal, its seconds, whether a new channel may be started
 * and the seconds until it may), then USER_SETTLE. The script's reply is `{id, status, extra, fresh}` (see CHANNEL_PUBLISH).
 */
export async function publishWithUserLimits(
  redis: RedisLike,
  keys: Keys,
  p: BrokerPublish,
  run: (verdict: readonly [number, number, number, number]) => Promise<unknown>,
): Promise<BrokerPublishOutcome> {
  const ch = p.channel;
  const user = p.user;
  const userKeys = user && [keys.userPublishes(user.sub), keys.userNewChannels(user.sub), keys.userRetained(ch.namespace, user.sub)];
  const bytes = Buffer.byteLength(p.head) + Buffer.byteLength(p.tail) + ENVELOPE_ADDED_BYTES;
  const limited = user !== undefined && userKeys !== undefined && (user.publishesPerMinute > 0 || user.newChannelsPerHour > 0 || user.retainedBytes > 0);
  let verdict: [number, number, number, number] = [0, 0, 1, 0];
  if (limited) {
    verdict = (await USER_RESERVE.run(redis, userKeys, [user.publishesPerMinute, user.newChannelsPerHour, user.retainedBytes, bytes, ch.policy.historyTtlSeconds])) as typeof verdict;
  }
  // A failure here leaves the reservation counted (Redis may have run the script): the safe side of a limit.
  const [id, status, extra, fresh] = (await run(verdict)) as [string, number, string | number | undefined, number?];
  if (limited && verdict[0] === 0) {
    const giveBack = status !== 0;
    const settle = [giveBack && user.publishesPerMinute > 0 ? 1 : 0, giveBack && user.retainedBytes > 0 ? bytes : 0, !giveBack && fresh === 1 && user.newChannelsPerHour > 0 ? 1 : 0];
    if (settle.some((x) => x !== 0)) await USER_SETTLE.run(redis, userKeys, settle);
  }
  switch (status) {
    case 1:
      return { kind: 'duplicate', id: String(id) };
    case 2:
      return { kind: 'conflict', id: String(id) };
    case 3:
    case 4:
    case 5:
      return { kind: PUBLISH_OUTCOME[status], retryAfterSeconds: Number(extra) };
    default:
      return { kind: 'published', id: String(id), envelope: extra as string };
  }
}

/**
 * The command that sends a channel's live events on this client: `SPUBLISH` on a Redis Cluster (sharded pub/sub, Redis
 * 7+: the message stays on the shard that owns the live channel's slot, where the subscribers `SSUBSCRIBE`,
 * core/redis/subscriber.ts), `PUBLISH` on one node. Derived from the client, so no caller can pair a cluster with
 * `PUBLISH` (which a subscriber on `SSUBSCRIBE` never receives).
 */
export function publishCommandOf(redis: RedisLike): 'PUBLISH' | 'SPUBLISH' {
  return isCluster(redis) ? 'SPUBLISH' : 'PUBLISH';
}

/** What a Redis broker holds: client, keys, publish command. */
export abstract class RedisBrokerBase {
  protected readonly keys: Keys;
  protected readonly publishCommand: 'PUBLISH' | 'SPUBLISH';
  constructor(
    protected readonly redis: RedisLike,
    config: Pick<CoreConfig, 'keyPrefix'>,
  ) {
    this.keys = new Keys(config.keyPrefix);
    this.publishCommand = publishCommandOf(redis);
  }
}
