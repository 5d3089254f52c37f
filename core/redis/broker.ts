import type { ParsedChannel } from '../channels';
import { LAST_ID_TAIL_SECONDS, type CoreConfig } from '../config';
import { CLOCK_ALLOWANCE_US, ENVELOPE_ADDED_BYTES, IDEMPOTENCY_TTL_SECONDS, REPLAY_FRAME_BYTES, type Broker, type BrokerPageBudget, type BrokerPublish, type BrokerPublishOutcome, type BrokerReplayOptions, type BrokerReplayPage } from '../broker';
import { Script, type RedisLike } from './client';
import { Keys } from './keys';

/**
 * The {@link Broker} on one Redis primary: a channel's history is a stream, its live events a pub/sub channel, the
 * deployment-wide sequence one key, and each operation one Lua script, so history and live delivery never disagree.
 */

/** Lost ranges remembered (the newest); a reader in an older one resumes without a reset. */
export const LOST_RANGES_KEPT = 64;

/**
 * Lua: `markLost(key, from, to)` records that ids in (from, to] may have been issued and then lost (a failover rolled
 * the sequence back): a reader whose cursor lies in that range must reset. Ranges live in a sorted set (member
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
 * Lua shared by the publish scripts (the sequence's PUBLISH here and `CHANNEL_PUBLISH` in `channel-broker.ts`), over
 * the ARGV they share (see {@link publishArgs}: ARGV[1] live channel, 2-3 envelope head and tail, 4 history size, 5
 * history TTL, 6 idempotency TTL, 7 use idempotency, 8 event hash, 9 markers' TTL, 14 the publish command).
 * `idempotent(key)`: the reply for an idempotency key already used ({id, 1} the same event, {id, 2} another), or nil.
 * `admit(idem, last id, history, horizon)`: that reply, or the user's refusal (ARGV[10], its seconds ARGV[11]), or the
 * channel quota's ({'', 4, seconds} for a new channel when ARGV[12] is '0'), else 1 for a new channel, 0 for another.
 * `envelope(t, id, prev)`: the envelope around the id and the time of `TIME` reply `t`, in milliseconds, ending with
 * `prev`: the channel's previous event id (its last id before this one, '0' when it has none), so a client can count
 * the events it missed between two it received (ids are Redis time per channel, not a count).
 * `append(history, horizon, gap, last, id, env, clock)`: appends the envelope to the history, trimming by count and
 * age and recording the horizon, or the gap when the stream was created again after it expired (`last`: the channel's
 * last id as a string, or nil). `finish(lastKey, idemKey, id, env)`: the last id, live delivery, the idempotency key.
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
local function admit(kIdem, kLast, kHist, kHorizon)
  local dup = idempotent(kIdem)
  if dup then return dup end
  if ARGV[10] ~= '0' then return {'', tonumber(ARGV[10]), tonumber(ARGV[11])} end
  if redis.call('EXISTS', kLast, kHist, kHorizon) == 0 then
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
  if len == 0 and last then
    redis.call('SET', kGap, last, 'EX', keep)
    redis.call('DEL', kHorizon)
  else
    local horizon
    if len >= size then
      local gone = redis.call('XRANGE', kHist, '-', '+', 'COUNT', len - size + 1)
      horizon = tonumber(string.match(gone[#gone][1], '^(%d+)'))
    end
    local minid = string.format('%.0f', clock - tonumber(ARGV[5]) * 1000000)
    local aged = redis.call('XREVRANGE', kHist, '(' .. minid .. '-0', '-', 'COUNT', 1)
    if aged[1] then
      local a = tonumber(string.match(aged[1][1], '^(%d+)'))
      if not horizon or a > horizon then horizon = a end
      redis.call('XTRIM', kHist, 'MINID', minid .. '-0')
    end
    if horizon then redis.call('SET', kHorizon, string.format('%.0f', horizon), 'EX', keep) end
  end
  redis.call('XADD', kHist, 'MAXLEN', '=', size, id .. '-0', 'e', env)
  redis.call('EXPIRE', kHist, ARGV[5])
  redis.call('EXPIRE', kHorizon, keep)
  redis.call('EXPIRE', kGap, keep)
end
local function finish(kLast, kIdem, id, env)
  redis.call('SET', kLast, id, 'EX', ARGV[9])
  redis.call(ARGV[14], ARGV[1], env)
  if ARGV[7] == '1' then redis.call('SET', kIdem, id .. ' ' .. ARGV[8], 'EX', ARGV[6]) end
end`;

/**
 * One script appends to the channel's stream and publishes, so history and live delivery never
 * disagree. The id comes from one deployment-wide sequence: Redis time in microseconds, or one more
 * than the last id when that is not below it (two publishes in one microsecond, a clock that went
 * back), so ids only grow, one number is a cursor over every channel, and no real id is ever ahead of
 * Redis time (by more than the skew between two primaries' clocks): what bounds a reader's cursor
 * (see CURSOR). The sequence's seed (when it is missing: first use, or data lost) is Redis time too.
 * The envelope is serialised once (in Node, around the id and time Redis assigns).
 *
 * What a replay needs to prove a cursor is covered, kept beside the stream:
 * - the channel's last id (`hl:`), which outlives the history by {@link LAST_ID_TAIL_SECONDS}, so a
 *   history that expired or was evicted is still known to have existed;
 * - when the history is full, the id of the newest event trimmed from it (the horizon, `hx:`);
 * - when the stream is created again after it expired or was evicted, the last id before that (the
 *   gap, `hg:`): what the stream holds now starts after it.
 * Horizon and gap are refreshed with the last id, so they live exactly as long as it does.
 *
 * If the sequence is below the channel's last id (or, without one, its newest entry) because a
 * failover lost writes and rolled it back, it is moved past that id first, so an id is never issued
 * twice on a channel, and the ids in between are recorded as lost (see MARK_LOST).
 *
 * An event leaves the history once it is older than the history TTL: each publish trims by id
 * (`MINID`, ids being Redis time) as well as by count, so publishing to a channel keeps its own
 * event for a TTL, not the channel's whole history (the stream's own TTL still ends it all a TTL
 * after its last event). The horizon is the newest event trimmed either way.
 *
 * Users (not backends) are limited: events per one-minute window, new channels (no last id, stream or horizon) per
 * one-hour window, and bytes per namespace per window of one history TTL (what the user can keep in Redis). Their
 * counters live in the user's slot, apart from the channel's, so USER_RESERVE checks them (and reserves the event and
 * its bytes) before this script and hands it the verdict: a refusal (after the idempotency check, so a retry of an
 * event already published is still a duplicate) or whether the user may start a new channel. USER_SETTLE then counts
 * a new channel, or gives the reservation back when nothing was published.
 *
 * An idempotency key belongs to its principal and its channel and remembers the first id with a hash of the event
 * (type, data): the same event again is a duplicate, a different one a conflict.
 *
 * Slots: every key but the sequence's (seq, seq base, lost ranges) carries the channel's hash tag; the sequence is the
 * one deployment-wide key (see DESIGN, "Redis Cluster"), so on a cluster this script needs positions per channel first.
 *
 * KEYS: history stream, seq, seq base, idempotency key, horizon, gap, last id, lost ranges (an unused idempotency key
 *       repeats the history's)
 * ARGV: live channel, envelope head, envelope tail, history size, history TTL, idempotency TTL,
 *       use idempotency, event hash, last-id TTL, the user's refusal (0 none, 3 rate, 5 retained bytes), its seconds,
 *       1 when a new channel may be started (else 0), the seconds until it may, the publish command (PUBLISH or
 *       SPUBLISH)
 * Returns {id, 0, envelope, new channel 1|0} published, {id, 1} duplicate, {id, 2} idempotency conflict,
 * {'', 3, seconds} rate limited, {'', 4, seconds} channel quota exceeded,
 * {'', 5, seconds} retained bytes exceeded.
 */
const PUBLISH = new Script(`${MARK_LOST}${PUBLISH_STEPS}
local fresh = admit(KEYS[4], KEYS[7], KEYS[1], KEYS[5])
if type(fresh) == 'table' then return fresh end
local t = redis.call('TIME')
local clock = clockUs(t)
local cur = tonumber(redis.call('GET', KEYS[2]) or '')
if not cur then
  cur = clock
  redis.call('SET', KEYS[3], string.format('%.0f', cur))
end
local last = redis.call('GET', KEYS[7])
if not last then
  local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  if top[1] then last = string.match(top[1][1], '^(%d+)') end
end
if last and cur < tonumber(last) then
  markLost(KEYS[8], string.format('%.0f', cur), last)
  cur = tonumber(last)
end
local n = cur + 1
if n < clock then n = clock end
local id = string.format('%.0f', n)
redis.call('SET', KEYS[2], id)
local env = envelope(t, id, last)
append(KEYS[1], KEYS[5], KEYS[6], last, id, env, clock)
finish(KEYS[7], KEYS[4], id, env)
return {id, 0, env, fresh}
`);

/**
 * A user's publish limits, checked in the user's slot before PUBLISH: events per one-minute window, and bytes per
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
 * After PUBLISH, in the user's slot: counts the new channel it started, or gives back what USER_RESERVE reserved when
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
 * Lua of a replay page's budget, shared by the replay scripts (the sequence's REPLAY here and `CHANNEL_REPLAY`):
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

/**
 * Lua shared by the scripts that take a reader's cursor (KEYS[1] seq base, KEYS[2] seq, KEYS[3]
 * lost ranges, ARGV[1] cursor). A cursor further ahead of Redis time than {@link CLOCK_ALLOWANCE_US}
 * cannot be an id this deployment issued: the script returns `invalid` and writes nothing. Otherwise
 * it sets `cursor`/`from` (where to read after), `now` (the sequence) and `all` (1 when every channel
 * must be reset):
 * - the sequence is missing (Redis lost its data, nothing published since): seeded as a publish
 *   would, at least up to the cursor;
 * - the cursor is below the seed: history lost, read from the seed;
 * - the cursor is ahead of the sequence (a failover lost writes and rolled it back): the sequence
 *   is moved up to the cursor and one past it (the reader continues from there), so no id the
 *   reader has seen is issued again, and (sequence, cursor] is recorded as lost. This is the one
 *   write a reader can cause, and it is bounded: ids are Redis time, so a cursor within the
 *   allowance is one a failover at this moment could have lost, and it moves the sequence no
 *   further than a publish now would (plus the allowance);
 * - the cursor lies in a range recorded as lost: the reader saw, or missed, events that are gone.
 */
const CURSOR = `${MARK_LOST}
local cursor = tonumber(ARGV[1])
local t = redis.call('TIME')
local clock = clockUs(t)
if cursor > clock + ${CLOCK_ALLOWANCE_US} then return 'invalid' end
local from = ARGV[1]
local all = 0
local base = redis.call('GET', KEYS[1])
local now = redis.call('GET', KEYS[2])
if not now and cursor > 0 then
  local seed = string.format('%.0f', clock)
  if clock < cursor then seed = ARGV[1] end
  redis.call('SET', KEYS[2], seed)
  redis.call('SET', KEYS[1], seed)
  base = seed
  now = seed
  all = 1
end
now = now or '0'
if base and cursor < tonumber(base) then
  all = 1
  cursor = tonumber(base)
  from = base
end
if cursor > tonumber(now) then
  markLost(KEYS[3], now, ARGV[1])
  redis.call('SET', KEYS[2], ARGV[1])
  now = string.format('%.0f', redis.call('INCR', KEYS[2]))
  all = 1
elseif isLost(KEYS[3], cursor) then
  all = 1
end`;

/**
 * KEYS: seq base, seq, lost range   ARGV: cursor.  Returns 1 when the cursor cannot be trusted (see CURSOR):
 * every channel of the reader must be reset.
 */
const CLAIM_CURSOR = new Script(`${CURSOR}
return all
`);

/**
 * Reads one page of what the channels received after the cursor, merged in id order, with the
 * sequence's current value in the same atomic step (the position to continue from). A channel whose
 * history cannot be proven to reach back to the cursor is reported as reset instead of being
 * replayed with a gap:
 * - trimmed (horizon above the cursor): reset, nothing replayed (the client reloads its state);
 * - expired or evicted and created again (gap above the cursor): reset, and what the stream holds
 *   now (all of it after the gap) is replayed;
 * - expired or evicted, or never kept (history size 0), with a last id above the cursor: reset.
 * A cursor older than the sequence's seed means Redis lost its data: every channel is reset and
 * what was published since the seed is replayed. A cursor ahead of the sequence, or in a range of
 * ids lost that way before, means a failover lost writes: every channel is reset (see CURSOR).
 *
 * The page ends at `max events` or `max bytes` (each event costs its envelope plus
 * {@link REPLAY_FRAME_BYTES}; the first event is taken whatever its size, so a page always moves
 * on). The merge runs here, reading each stream in chunks sized so that what the page cannot take
 * stays small: a chunk is the budget left shared among the channels, counted in the largest entry
 * (`entry bytes`), at least one entry; a channel is read again only once its chunk was taken. What
 * is read beyond the page is then at most one budget or one entry per channel, whichever is larger.
 *
 * In reverse (the history API's `reverse`), each stream is read newest first, from below `before` (when given) down to
 * the cursor, and the merge takes the highest id: the same coverage rule, budget and chunks, the other way. With
 * `held` (the history API without `since`) a trimmed stream is read all the same: the reader asked for what is held.
 *
 * KEYS: seq base, seq, lost ranges, history streams..., horizons..., gaps..., last ids...
 * ARGV: cursor, max events, max bytes, entry bytes (the largest envelope plus its frame), reverse ('1' or ''),
 *       before ('' for none: the newest), held ('1': read trimmed streams too)
 * Returns `invalid` (see CURSOR), or {all-reset, seq now, more, {reset per channel}, {envelope...}}
 */
const REPLAY = new Script(`${CURSOR}
local n = (#KEYS - 3) / 4
local rev = ARGV[5] == '1'
local held = ARGV[7] == '1'
local upper = '+'
if ARGV[6] ~= '' then upper = '(' .. ARGV[6] .. '-0' end
local resets = {}
local src = {}
for i = 1, n do
  local stream = KEYS[3 + i]
  local horizon = redis.call('GET', KEYS[3 + n + i])
  local reset = all
  local replay = true
  if horizon and tonumber(horizon) > cursor and not held then
    reset = 1
    replay = false
  else
    local gap = redis.call('GET', KEYS[3 + 2 * n + i])
    if gap and tonumber(gap) > cursor then
      reset = 1
    elseif redis.call('EXISTS', stream) == 0 then
      local last = redis.call('GET', KEYS[3 + 3 * n + i])
      if last and tonumber(last) > cursor then reset = 1 end
      replay = false
    end
  end
  resets[i] = reset
  if replay then src[#src + 1] = {key = stream, after = from, upper = upper, buf = {}, k = 1, done = false} end
end
${pageBudget(2)}
local events = {}
local function head(s)
  if s.k > #s.buf then
    if s.done then return nil end
    local chunk = math.floor((maxB - bytes) / (unit * #src))
    if chunk > maxN - count then chunk = maxN - count end
    if chunk < 1 then chunk = 1 end
    if rev then
      s.buf = redis.call('XREVRANGE', s.key, s.upper, '(' .. s.after .. '-0', 'COUNT', chunk)
    else
      s.buf = redis.call('XRANGE', s.key, '(' .. s.after .. '-0', s.upper, 'COUNT', chunk)
    end
    s.k = 1
    if #s.buf < chunk then s.done = true end
  end
  return s.buf[s.k]
end
while true do
  local best, bestId
  for _, s in ipairs(src) do
    local e = head(s)
    if e then
      local id = tonumber(string.match(e[1], '^(%d+)'))
      if not best or (rev and id > bestId) or (not rev and id < bestId) then
        best = s
        bestId = id
      end
    end
  end
  if not best then break end
  local e = best.buf[best.k]
  if not fits(e) then break end
  events[count] = e[2][2]
  if rev then best.upper = '(' .. e[1] else best.after = string.match(e[1], '^(%d+)') end
  best.k = best.k + 1
end
return {all, now, more, resets, events}
`);

const FORWARD: BrokerReplayOptions = { reverse: false };

/** Every script of the broker, by name (for the cluster-slot audit in test/runtime/script-slots.test.ts). */
export const BROKER_SCRIPTS = { PUBLISH, USER_RESERVE, USER_SETTLE, CLAIM_CURSOR, REPLAY } as const;

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
 * and the seconds until it may), then USER_SETTLE. The script's reply is `{id, status, extra, fresh}` (see PUBLISH).
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

export interface RedisBrokerOptions {
  /**
   * Publish live events with `SPUBLISH` (sharded pub/sub, Redis 7+: the message stays on the shard that owns the live
   * channel's slot) instead of `PUBLISH` (which a cluster broadcasts to every node). Defaults to false: one node.
   */
  readonly sharded?: boolean;
}

/** What both Redis brokers (the sequence's here, positions per channel in `channel-broker.ts`) hold: client, keys, publish command. */
export abstract class RedisBrokerBase {
  protected readonly keys: Keys;
  protected readonly publishCommand: 'PUBLISH' | 'SPUBLISH';
  constructor(
    protected readonly redis: RedisLike,
    config: Pick<CoreConfig, 'keyPrefix'>,
    options: RedisBrokerOptions = {},
  ) {
    this.keys = new Keys(config.keyPrefix);
    this.publishCommand = options.sharded ? 'SPUBLISH' : 'PUBLISH';
  }
}

export class RedisBroker extends RedisBrokerBase implements Broker {

  publish(p: BrokerPublish): Promise<BrokerPublishOutcome> {
    const keys = this.keys;
    const ch = p.channel;
    const history = keys.history(ch.channel);
    return publishWithUserLimits(this.redis, keys, p, (verdict) =>
      PUBLISH.run(
        this.redis,
        [history, keys.seq, keys.seqBase, p.idempotency ? keys.idempotency(ch.channel, p.idempotency.principal, p.idempotency.key) : history, keys.horizon(ch.channel), keys.gap(ch.channel), keys.lastId(ch.channel), keys.seqLost],
        [keys.live(ch.channel), ...publishArgs(p), ...verdict, this.publishCommand],
      ),
    );
  }

  async replay(channels: readonly ParsedChannel[], cursor: number, budget: BrokerPageBudget, order: BrokerReplayOptions = FORWARD): Promise<BrokerReplayPage | 'invalid'> {
    const keys = this.keys;
    const res = (await REPLAY.run(
      this.redis,
      [
        keys.seqBase,
        keys.seq,
        keys.seqLost,
        ...channels.map((c) => keys.history(c.channel)),
        ...channels.map((c) => keys.horizon(c.channel)),
        ...channels.map((c) => keys.gap(c.channel)),
        ...channels.map((c) => keys.lastId(c.channel)),
      ],
      [String(cursor), budget.maxEvents, budget.maxBytes, budget.entryBytes, order.reverse ? '1' : '', order.before === undefined ? '' : String(order.before), order.held ? '1' : ''],
    )) as 'invalid' | [number, string, number, number[], string[]];
    if (res === 'invalid') return 'invalid';
    const [, now, more, flags, events] = res;
    return { events, resets: channels.map((_, i) => flags[i] === 1), now: Number(now), more: more === 1 };
  }

  async claimCursor(cursor: number): Promise<boolean | 'invalid'> {
    const keys = this.keys;
    const r = await CLAIM_CURSOR.run(this.redis, [keys.seqBase, keys.seq, keys.seqLost], [String(cursor)]);
    return r === 'invalid' ? 'invalid' : Number(r) === 1;
  }

  async currentCursor(): Promise<number> {
    const v = await this.redis.get(this.keys.seq);
    return v === null ? 0 : Number(v);
  }
}
