import { createHash } from 'node:crypto';
import { MAX_CURSOR_DIGITS } from '../contract/limits';
import { DEFAULT_REPLAY_MAX_BYTES, DEFAULT_USER_NEW_CHANNELS_PER_HOUR, DEFAULT_USER_PUBLISH_PER_MINUTE, DEFAULT_USER_RETAINED_BYTES, LAST_ID_TAIL_SECONDS, type CoreConfig } from './config';
import { mayPublish, parseChannel, type ChannelGrant, type ParsedChannel } from './channels';
import { RealtimeError } from './errors';
import { assertDataDepth } from './json-depth';
import { describeIdentity, type Identity } from './identity';
import { Keys } from './redis/keys';
import { Script, type RedisLike } from './redis/client';

/** What every transport delivers: `{channel, id, type, data, ts}`. */
export interface Envelope<T = unknown> {
  readonly channel: string;
  /** The event's cursor: a decimal integer from the deployment-wide sequence. */
  readonly id: string;
  readonly type: string;
  readonly data: T;
  /** Milliseconds since the epoch, Redis server time at publish. */
  readonly ts: number;
}

export const TYPE_PATTERN = /^[A-Za-z][A-Za-z0-9_.:-]{0,63}$/;
/** Event types the transports use for their own signals. */
export const RESERVED_TYPES = new Set(['ready', 'reset', 'error', 'pong', 'subscribed', 'unsubscribed']);
const IDEMPOTENCY_PATTERN = /^[\x21-\x7e]{1,128}$/;
const CURSOR_PATTERN = new RegExp(`^\\d{1,${MAX_CURSOR_DIGITS}}$`);
/** How long an idempotency key remembers its first event id. */
export const IDEMPOTENCY_TTL_SECONDS = 24 * 3600;

/**
 * How far ahead of Redis time a cursor may be and still be an id this deployment issued: ids are Redis time in
 * microseconds (see PUBLISH), so a real id was issued at or before the moment its primary's clock read it; after a
 * failover the new primary's clock may be behind the old one's by their skew (both synchronised by the Amazon Time
 * Sync Service). One second is far above that skew and far below what a reader could do with it. A cursor further
 * ahead cannot be real, however much asynchronous replication lost: it is refused, not treated as a roll-back.
 */
export const CLOCK_ALLOWANCE_US = 1_000_000;
/** Lost ranges remembered (the newest); a reader in an older one resumes without a reset. */
export const LOST_RANGES_KEPT = 64;

/**
 * Lua: `markLost(key, from, to)` records that ids in (from, to] may have been issued and then lost (a failover rolled
 * the sequence back): a reader whose cursor lies in that range must reset. Ranges live in a sorted set (member
 * `from to`, score `to`); a new range is merged only with ranges it overlaps or touches (no id was issued between
 * them), so ids issued between two losses stay valid. The newest {@link LOST_RANGES_KEPT} are kept.
 * `isLost(key, cursor)` tells whether a cursor lies in a recorded range.
 */
const MARK_LOST = `
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
 * Users (not backends) are limited before anything is written: events per one-minute window, new
 * channels (no last id, stream or horizon) per one-hour window, and bytes per namespace per window
 * of one history TTL (what the user can keep in Redis); a refusal writes nothing.
 *
 * An idempotency key belongs to its principal and remembers the first id with a hash of the event
 * (channel, type, data): the same event again is a duplicate, a different one a conflict.
 *
 * KEYS: history stream, seq, seq base, idempotency key, horizon, gap, last id, user publish counter,
 *       user new-channel counter, lost ranges, user retained-bytes counter (unused keys repeat seq)
 * ARGV: live channel, envelope head, envelope tail, history size, history TTL, idempotency TTL,
 *       use idempotency, event hash, last-id TTL, publishes per minute (0: unlimited),
 *       new channels per hour (0: unlimited), retained bytes per history TTL (0: unlimited)
 * Returns {id, 0, envelope} published, {id, 1} duplicate, {id, 2} idempotency conflict,
 * {'', 3, seconds} rate limited, {'', 4, seconds} channel quota exceeded,
 * {'', 5, seconds} retained bytes exceeded.
 */
const PUBLISH = new Script(`${MARK_LOST}
if ARGV[7] == '1' then
  local prev = redis.call('GET', KEYS[4])
  if prev then
    local sp = string.find(prev, ' ', 1, true)
    if not sp then return {prev, 1} end
    local pid = string.sub(prev, 1, sp - 1)
    if string.sub(prev, sp + 1) == ARGV[8] then return {pid, 1} end
    return {pid, 2}
  end
end
local function wait(key)
  local s = redis.call('TTL', key)
  if s < 1 then s = 1 end
  return s
end
local rate = tonumber(ARGV[10])
if rate > 0 and tonumber(redis.call('GET', KEYS[8]) or '0') >= rate then return {'', 3, wait(KEYS[8])} end
local quota = tonumber(ARGV[11])
local fresh = false
if quota > 0 and redis.call('EXISTS', KEYS[7], KEYS[1], KEYS[5]) == 0 then
  if tonumber(redis.call('GET', KEYS[9]) or '0') >= quota then return {'', 4, wait(KEYS[9])} end
  fresh = true
end
local budget = tonumber(ARGV[12])
local bytes = #ARGV[2] + #ARGV[3] + 30
if budget > 0 and tonumber(redis.call('GET', KEYS[11]) or '0') + bytes > budget then return {'', 5, wait(KEYS[11])} end
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
  markLost(KEYS[10], string.format('%.0f', cur), last)
  cur = tonumber(last)
end
local n = cur + 1
if n < clock then n = clock end
local id = string.format('%.0f', n)
redis.call('SET', KEYS[2], id)
local ts = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
local env = ARGV[2] .. id .. ARGV[3] .. ts .. '}'
local size = tonumber(ARGV[4])
local keep = ARGV[9]
if size > 0 then
  local len = redis.call('XLEN', KEYS[1])
  if len == 0 and last then
    redis.call('SET', KEYS[6], last, 'EX', keep)
    redis.call('DEL', KEYS[5])
  else
    local horizon
    if len >= size then
      local gone = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', len - size + 1)
      horizon = tonumber(string.match(gone[#gone][1], '^(%d+)'))
    end
    local minid = string.format('%.0f', clock - tonumber(ARGV[5]) * 1000000)
    local aged = redis.call('XREVRANGE', KEYS[1], '(' .. minid .. '-0', '-', 'COUNT', 1)
    if aged[1] then
      local a = tonumber(string.match(aged[1][1], '^(%d+)'))
      if not horizon or a > horizon then horizon = a end
      redis.call('XTRIM', KEYS[1], 'MINID', minid .. '-0')
    end
    if horizon then redis.call('SET', KEYS[5], string.format('%.0f', horizon), 'EX', keep) end
  end
  redis.call('XADD', KEYS[1], 'MAXLEN', '=', size, id .. '-0', 'e', env)
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  redis.call('EXPIRE', KEYS[5], keep)
  redis.call('EXPIRE', KEYS[6], keep)
end
redis.call('SET', KEYS[7], id, 'EX', keep)
redis.call('PUBLISH', ARGV[1], env)
if ARGV[7] == '1' then redis.call('SET', KEYS[4], id .. ' ' .. ARGV[8], 'EX', ARGV[6]) end
if rate > 0 and redis.call('INCR', KEYS[8]) == 1 then redis.call('EXPIRE', KEYS[8], 60) end
if fresh and redis.call('INCR', KEYS[9]) == 1 then redis.call('EXPIRE', KEYS[9], 3600) end
if budget > 0 and redis.call('INCRBY', KEYS[11], bytes) == bytes then redis.call('EXPIRE', KEYS[11], ARGV[5]) end
return {id, 0, env}
`);

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

/** Bytes a replayed event costs beyond its envelope in a page's budget: the SSE lines around it (`id:`, `event:` with a type of up to 64 characters, `data:`), or a poll answer's comma. */
export const REPLAY_FRAME_BYTES = 128;
/** Default of REPLAY_MAX_EVENTS: events in one replay page. */
export const DEFAULT_REPLAY_MAX_EVENTS = 1000;
export { DEFAULT_REPLAY_MAX_BYTES };

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
 * KEYS: seq base, seq, lost ranges, history streams..., horizons..., gaps..., last ids...
 * ARGV: cursor, max events, max bytes, entry bytes (the largest envelope plus its frame)
 * Returns `invalid` (see CURSOR), or {all-reset, seq now, more, {reset per channel}, {envelope...}}
 */
const REPLAY = new Script(`${CURSOR}
local n = (#KEYS - 3) / 4
local resets = {}
local src = {}
for i = 1, n do
  local stream = KEYS[3 + i]
  local horizon = redis.call('GET', KEYS[3 + n + i])
  local reset = all
  local replay = true
  if horizon and tonumber(horizon) > cursor then
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
  if replay then src[#src + 1] = {key = stream, after = from, buf = {}, k = 1, done = false} end
end
local maxN, maxB, unit = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local events, count, bytes, more = {}, 0, 0, 0
local function head(s)
  if s.k > #s.buf then
    if s.done then return nil end
    local chunk = math.floor((maxB - bytes) / (unit * #src))
    if chunk > maxN - count then chunk = maxN - count end
    if chunk < 1 then chunk = 1 end
    s.buf = redis.call('XRANGE', s.key, '(' .. s.after .. '-0', '+', 'COUNT', chunk)
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
      if not best or id < bestId then
        best = s
        bestId = id
      end
    end
  end
  if not best then break end
  local e = best.buf[best.k]
  local size = #e[2][2] + ${REPLAY_FRAME_BYTES}
  if count >= maxN or (count > 0 and bytes + size > maxB) then
    more = 1
    break
  end
  count = count + 1
  bytes = bytes + size
  events[count] = e[2][2]
  best.after = string.match(e[1], '^(%d+)')
  best.k = best.k + 1
end
return {all, now, more, resets, events}
`);

export interface PublishInput {
  readonly channel: unknown;
  readonly type: unknown;
  readonly data: unknown;
  readonly idempotencyKey?: unknown;
}

export interface PublishResult {
  readonly id: string;
  readonly channel: string;
  /** The envelope as published (absent when an idempotent retry returned the first id). */
  readonly envelope?: string;
  /** True when `idempotencyKey` matched an earlier publish: nothing was published again. */
  readonly duplicate: boolean;
}

export interface EventDeps {
  readonly redis: RedisLike;
  readonly config: CoreConfig;
}

/**
 * Validates a publish request without touching Redis; returns the parsed channel and serialised parts.
 * `grant` is what the publishing connection's ticket granted (it opens `granted` namespaces).
 */
export function preparePublish(input: PublishInput, identity: Identity, config: CoreConfig, grant?: ChannelGrant) {
  if (input === null || typeof input !== 'object') throw new RealtimeError('bad_request', 'The body must be a JSON object {"channel","type","data"}.');
  const ch = parseChannel(input.channel, config.namespaces);
  if (typeof input.type !== 'string' || !TYPE_PATTERN.test(input.type)) {
    throw new RealtimeError('invalid_type', '`type` must be 1-64 chars of A-Z a-z 0-9 _ . : -, starting with a letter.');
  }
  if (RESERVED_TYPES.has(input.type)) throw new RealtimeError('invalid_type', `\`type\` "${input.type}" is reserved for protocol signals; choose another.`);
  if (input.data === undefined) throw new RealtimeError('bad_request', '`data` is required (any JSON value; null is fine).');
  assertDataDepth(input.data);
  const key = input.idempotencyKey;
  if (key !== undefined && (typeof key !== 'string' || !IDEMPOTENCY_PATTERN.test(key))) {
    throw new RealtimeError('bad_request', '`idempotencyKey` must be 1-128 printable ASCII characters.');
  }
  if (!mayPublish(identity, ch, grant)) {
    throw new RealtimeError('forbidden', `Publishing to "${ch.channel}" is not allowed: namespace "${ch.namespace}" accepts events from ${ch.policy.publish === 'server' ? 'backends only' : 'its subscribers only'}.`);
  }
  const head = `{"channel":${JSON.stringify(ch.channel)},"id":"`;
  const tail = `","type":${JSON.stringify(input.type)},"data":${JSON.stringify(input.data)},"ts":`;
  // 16 digits of id, 13 of ts and the closing brace.
  const size = Buffer.byteLength(head) + Buffer.byteLength(tail) + 30;
  if (size > config.maxPayloadBytes) {
    throw new RealtimeError('payload_too_large', `The event would be ${size} bytes; the limit is ${config.maxPayloadBytes}. Send a reference to the data instead.`);
  }
  return { ch, head, tail, idempotencyKey: key as string | undefined };
}

/**
 * Validates, appends to history and publishes live in one atomic step. Returns the event id.
 * Users are held to {@link CoreConfig.userPublishPerMinute}, {@link CoreConfig.userNewChannelsPerHour} and
 * {@link CoreConfig.userRetainedBytes}; backends are not. `grant` is what the publishing connection's ticket granted (it opens `granted` namespaces).
 */
export async function publish(input: PublishInput, identity: Identity, deps: EventDeps, grant?: ChannelGrant): Promise<PublishResult> {
  const { ch, head, tail, idempotencyKey } = preparePublish(input, identity, deps.config, grant);
  const keys = new Keys(deps.config.keyPrefix);
  const user = identity.kind === 'user' ? identity.sub : undefined;
  const rate = user === undefined ? 0 : (deps.config.userPublishPerMinute ?? DEFAULT_USER_PUBLISH_PER_MINUTE);
  const quota = user === undefined ? 0 : (deps.config.userNewChannelsPerHour ?? DEFAULT_USER_NEW_CHANNELS_PER_HOUR);
  const retained = user === undefined ? 0 : (deps.config.userRetainedBytes ?? DEFAULT_USER_RETAINED_BYTES);
  const unused = keys.seq;
  const res = (await PUBLISH.run(
    deps.redis,
    [
      keys.history(ch.channel),
      keys.seq,
      keys.seqBase,
      idempotencyKey ? keys.idempotency(describeIdentity(identity), idempotencyKey) : unused,
      keys.horizon(ch.channel),
      keys.gap(ch.channel),
      keys.lastId(ch.channel),
      user === undefined ? unused : keys.userPublishes(user),
      user === undefined ? unused : keys.userNewChannels(user),
      keys.seqLost,
      user === undefined ? unused : keys.userRetained(ch.namespace, user),
    ],
    [
      keys.live(ch.channel),
      head,
      tail,
      ch.policy.historySize,
      ch.policy.historyTtlSeconds,
      IDEMPOTENCY_TTL_SECONDS,
      idempotencyKey ? '1' : '0',
      idempotencyKey ? eventHash(head, tail) : '',
      ch.policy.historyTtlSeconds + LAST_ID_TAIL_SECONDS,
      rate,
      quota,
      retained,
    ],
  )) as [string, number, string | number | undefined];
  const [id, status, extra] = res;
  switch (status) {
    case 1:
      return { id: String(id), channel: ch.channel, duplicate: true };
    case 2:
      throw new RealtimeError(
        'idempotency_conflict',
        `idempotencyKey ${JSON.stringify(idempotencyKey)} was already used for a different event (id ${String(id)}); send a new key for a new event, or the same channel, type and data to retry.`,
      );
    case 3:
      throw new RealtimeError('rate_limited', `At most ${rate} events per minute per user; retry in ${Number(extra)} s.`);
    case 4:
      throw new RealtimeError(
        'channel_quota_exceeded',
        `At most ${quota} new channels per hour per user; publish to a channel that already has events, or retry in ${Number(extra)} s.`,
      );
    case 5:
      throw new RealtimeError(
        'retained_bytes_exceeded',
        `Redis keeps at most ${retained} bytes of events per user in namespace "${ch.namespace}" per ${ch.policy.historyTtlSeconds} s (its history TTL); send smaller events or a reference to the data, or retry in ${Number(extra)} s.`,
      );
    default:
      return { id: String(id), channel: ch.channel, envelope: extra as string, duplicate: false };
  }
}

/** What an idempotency key remembers of its event: a hash of channel, type and data (the envelope around id and time). */
function eventHash(head: string, tail: string): string {
  return createHash('sha256').update(head).update('\0').update(tail).digest('base64url');
}

/** Parses a cursor (`Last-Event-ID`, `lastEventId`, `since`, `cursor`): 1 to 16 decimal digits. See also {@link cursorCannotBeReal}. */
export function parseCursor(value: unknown): number {
  if (typeof value !== 'string' || !CURSOR_PATTERN.test(value)) {
    throw new RealtimeError('invalid_cursor', 'A cursor is the decimal id of the last event received.');
  }
  return Number(value);
}

/**
 * How far ahead of this process's clock a cursor may be before {@link cursorCannotBeReal} refuses it without asking
 * Redis: 60 s, looser than {@link CLOCK_ALLOWANCE_US} because this clock is not the one that issued the ids (a task's
 * or a Lambda's clock a little behind Redis's must not refuse a client that just received an id). Redis decides the
 * rest with its own clock.
 */
export const LOCAL_CLOCK_ALLOWANCE_US = 60_000_000;

/**
 * True when `cursor` cannot be an id this deployment issued, judged without a round trip: past 2^53 (no id is), or
 * further ahead of this process's clock than {@link LOCAL_CLOCK_ALLOWANCE_US} (ids are Redis time in microseconds).
 * The replay and claim scripts then check it against Redis time with {@link CLOCK_ALLOWANCE_US} and write nothing
 * for a cursor beyond it.
 */
export function cursorCannotBeReal(cursor: number, nowMs: number = Date.now()): boolean {
  return !Number.isSafeInteger(cursor) || cursor < 0 || cursor > nowMs * 1000 + LOCAL_CLOCK_ALLOWANCE_US;
}

/** The refusal of a cursor that cannot be real (`400 invalid_cursor`; a native stream or a WebSocket subscribe gets `reset` instead). */
export function impossibleCursor(): RealtimeError {
  return new RealtimeError('invalid_cursor', 'The cursor is ahead of every id this service issued; resume without it (from now) and reload the state.');
}

/** True for the error of a cursor that cannot be real (or is malformed). */
export function isInvalidCursor(err: unknown): boolean {
  return err instanceof RealtimeError && err.code === 'invalid_cursor';
}

export interface ReplayResult {
  /** Envelopes after the cursor on every channel, in id order, as serialised at publish. */
  readonly events: string[];
  /** Channels whose history no longer reaches back to the cursor: the client must reload their state. */
  readonly resets: string[];
  /**
   * Where the reader continues from: the sequence when the replay ran (every event up to it was returned or reset),
   * or, when `more` is true, the id of the last event returned.
   */
  readonly position: number;
  /** True when the page ended at its count or byte budget: read again from `position` for the rest. */
  readonly more: boolean;
}

/** A replay page's budget: events and bytes (each event counts its envelope plus {@link REPLAY_FRAME_BYTES}). */
export interface PageBudget {
  /** Defaults to {@link DEFAULT_REPLAY_MAX_EVENTS}. */
  readonly maxEvents?: number;
  /** Defaults to the config's `replayMaxBytes`, or {@link DEFAULT_REPLAY_MAX_BYTES}. */
  readonly maxBytes?: number;
}

/**
 * Reads one page of what `channels` received after `cursor`, or which of them cannot be replayed: the oldest events
 * first, until `limit` events or the byte budget (REPLAY_MAX_BYTES), so one request never reads a whole history into
 * memory, and Redis reads little more than the page (see REPLAY). Throws `invalid_cursor`, writing nothing, for a
 * cursor that cannot be real (see CURSOR).
 */
export async function replay(channels: readonly ParsedChannel[], cursor: number, deps: EventDeps, limit: number | PageBudget = {}): Promise<ReplayResult> {
  if (cursorCannotBeReal(cursor)) throw impossibleCursor();
  const budget = typeof limit === 'number' ? { maxEvents: limit } : limit;
  const maxEvents = Math.max(1, budget.maxEvents ?? DEFAULT_REPLAY_MAX_EVENTS);
  const maxBytes = Math.max(1, budget.maxBytes ?? deps.config.replayMaxBytes ?? DEFAULT_REPLAY_MAX_BYTES);
  const keys = new Keys(deps.config.keyPrefix);
  const res = (await REPLAY.run(
    deps.redis,
    [
      keys.seqBase,
      keys.seq,
      keys.seqLost,
      ...channels.map((c) => keys.history(c.channel)),
      ...channels.map((c) => keys.horizon(c.channel)),
      ...channels.map((c) => keys.gap(c.channel)),
      ...channels.map((c) => keys.lastId(c.channel)),
    ],
    [String(cursor), maxEvents, maxBytes, deps.config.maxPayloadBytes + REPLAY_FRAME_BYTES],
  )) as 'invalid' | [number, string, number, number[], string[]];
  if (res === 'invalid') throw impossibleCursor();
  const [, now, moreFlag, flags, events] = res;
  const resets = channels.filter((_, i) => flags[i] === 1).map((c) => c.channel);
  const more = moreFlag === 1;
  const last = events.length ? envelopeSeq(events[events.length - 1]) : cursor;
  return { events, resets, position: more ? last : Math.max(Number(now), last, cursor), more };
}

/**
 * What a reader starting at `cursor` must be sent before going live: the replay after it, or, with
 * no cursor, nothing and the current position ("from now on").
 */
export async function backlog(channels: readonly ParsedChannel[], cursor: number | undefined, deps: EventDeps, limit?: number | PageBudget): Promise<ReplayResult> {
  if (cursor === undefined) return { events: [], resets: [], position: await currentCursor(deps), more: false };
  return replay(channels, cursor, deps, limit);
}

/**
 * For a reader that resumes from `cursor` without a replay (a WebSocket subscription whose floor is
 * below the cursor): true when the cursor is ahead of the sequence, or predates a loss of Redis
 * data, so the reader must reset its channels. The sequence is moved past the cursor in the same
 * step, so ids the reader has seen are never issued again. Throws `invalid_cursor` (nothing written)
 * for a cursor that cannot be real (see CURSOR).
 */
export async function claimCursor(cursor: number, deps: EventDeps): Promise<boolean> {
  const keys = new Keys(deps.config.keyPrefix);
  if (cursorCannotBeReal(cursor)) throw impossibleCursor();
  const r = await CLAIM_CURSOR.run(deps.redis, [keys.seqBase, keys.seq, keys.seqLost], [String(cursor)]);
  if (r === 'invalid') throw impossibleCursor();
  return Number(r) === 1;
}

/** The current position of the sequence: a cursor that means "from now on". */
export async function currentCursor(deps: EventDeps): Promise<number> {
  const v = await deps.redis.get(new Keys(deps.config.keyPrefix).seq);
  return v === null ? 0 : Number(v);
}

const ID_IN_ENVELOPE = /"id":"(\d+)"/;

/** Reads the id out of a serialised envelope without parsing the whole payload. */
export function envelopeSeq(envelope: string): number {
  // The id follows the channel, whose grammar cannot contain quotes, so the first match is the id.
  const m = ID_IN_ENVELOPE.exec(envelope);
  return m ? Number(m[1]) : 0;
}

/** Reads the type out of a serialised envelope (it follows the id; its grammar has no quotes). */
export function envelopeType(envelope: string): string {
  const i = envelope.indexOf('","type":"');
  if (i < 0) return 'message';
  const start = i + 10;
  return envelope.slice(start, envelope.indexOf('"', start));
}
