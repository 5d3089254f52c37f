import { createHash } from 'node:crypto';
import { DEFAULT_USER_NEW_CHANNELS_PER_HOUR, DEFAULT_USER_PUBLISH_PER_MINUTE, LAST_ID_TAIL_SECONDS, type CoreConfig } from './config';
import { mayPublish, parseChannel, type ChannelGrant, type ParsedChannel } from './channels';
import { RealtimeError } from './errors';
import { assertDataDepth } from './json-depth';
import { describeIdentity, type Identity } from './identity';
import { Keys } from './keys';
import { Script, type RedisLike } from './redis';

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
const CURSOR_PATTERN = /^\d{1,16}$/;
/** How long an idempotency key remembers its first event id. */
export const IDEMPOTENCY_TTL_SECONDS = 24 * 3600;

/**
 * Lua: `markLost(key, from, to)` records that ids in (from, to] may have been delivered and then
 * lost (a failover rolled the sequence back): a reader whose cursor lies in that range must reset.
 * Successive ranges are merged into one that covers them all (a few extra resets, never a silent loss).
 */
const MARK_LOST = `
local function markLost(key, from, to)
  local prev = redis.call('GET', key)
  if prev then
    local f, t = string.match(prev, '^(%d+) (%d+)$')
    if f and tonumber(f) < tonumber(from) then from = f end
    if t and tonumber(t) > tonumber(to) then to = t end
  end
  redis.call('SET', key, from .. ' ' .. to)
end`;

/**
 * One script appends to the channel's stream and publishes, so history and live delivery never
 * disagree. The id comes from one deployment-wide sequence, seeded from Redis time in microseconds
 * when missing (first use, or data lost), so ids only grow and one number is a cursor over every
 * channel. The envelope is serialised once (in Node, around the id and time Redis assigns).
 *
 * What a replay needs to prove a cursor is covered, kept beside the stream:
 * - the channel's last id (`hl:`), which outlives the history by {@link LAST_ID_TAIL_SECONDS}, so a
 *   history that expired or was evicted is still known to have existed;
 * - when the history is full, the id of the newest event trimmed from it (the horizon, `hx:`);
 * - when the stream is created again after it expired or was evicted, the last id before that (the
 *   gap, `hg:`): what the stream holds now starts after it.
 * Horizon and gap are refreshed with the last id, so they live exactly as long as it does.
 *
 * If the sequence is at or below the channel's last id (or, without one, its newest entry) because a
 * failover lost writes and rolled it back, it is moved past that id first, so an id is never issued
 * twice on a channel, and the ids in between are recorded as lost (see MARK_LOST).
 *
 * Users (not backends) are limited before anything is written: events per one-minute window, and
 * new channels (no last id, stream or horizon) per one-hour window; a refusal writes nothing.
 *
 * An idempotency key belongs to its principal and remembers the first id with a hash of the event
 * (channel, type, data): the same event again is a duplicate, a different one a conflict.
 *
 * KEYS: history stream, seq, seq base, idempotency key, horizon, gap, last id, user publish counter,
 *       user new-channel counter (unused keys repeat seq), lost range
 * ARGV: live channel, envelope head, envelope tail, history size, history TTL, idempotency TTL,
 *       use idempotency, event hash, last-id TTL, publishes per minute (0: unlimited),
 *       new channels per hour (0: unlimited)
 * Returns {id, 0, envelope} published, {id, 1} duplicate, {id, 2} idempotency conflict,
 * {'', 3, seconds} rate limited, {'', 4, seconds} channel quota exceeded.
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
local t = redis.call('TIME')
if redis.call('EXISTS', KEYS[2]) == 0 then
  local seed = t[1] .. string.format('%06d', tonumber(t[2]))
  redis.call('SET', KEYS[2], seed)
  redis.call('SET', KEYS[3], seed)
end
local last = redis.call('GET', KEYS[7])
if not last then
  local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  if top[1] then last = string.match(top[1][1], '^(%d+)') end
end
local n = redis.call('INCR', KEYS[2])
if last and n <= tonumber(last) then
  markLost(KEYS[10], string.format('%.0f', n - 1), last)
  redis.call('SET', KEYS[2], last)
  n = redis.call('INCR', KEYS[2])
end
local id = string.format('%.0f', n)
local ts = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
local env = ARGV[2] .. id .. ARGV[3] .. ts .. '}'
local size = tonumber(ARGV[4])
local keep = ARGV[9]
if size > 0 then
  local len = redis.call('XLEN', KEYS[1])
  if len == 0 and last then
    redis.call('SET', KEYS[6], last, 'EX', keep)
    redis.call('DEL', KEYS[5])
  elseif len >= size then
    local gone = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', len - size + 1)
    redis.call('SET', KEYS[5], string.match(gone[#gone][1], '^(%d+)'), 'EX', keep)
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
return {id, 0, env}
`);

/**
 * Lua shared by the scripts that take a reader's cursor (KEYS[1] seq base, KEYS[2] seq, KEYS[3]
 * lost range, ARGV[1] cursor). Sets `cursor`/`from` (where to read after), `now` (the sequence) and `all` (1 when every
 * channel must be reset):
 * - the sequence is missing (Redis lost its data, nothing published since): seeded as a publish
 *   would, at least up to the cursor;
 * - the cursor is below the seed: history lost, read from the seed;
 * - the cursor is ahead of the sequence (a failover lost writes and rolled it back): the sequence
 *   is moved up to the cursor and one past it (the reader continues from there), so no id the
 *   reader has seen is issued again, and (sequence, cursor] is recorded as lost;
 * - the cursor lies in a range recorded as lost: the reader saw, or missed, events that are gone.
 */
const CURSOR = `${MARK_LOST}
local cursor = tonumber(ARGV[1])
local from = ARGV[1]
local all = 0
local base = redis.call('GET', KEYS[1])
local now = redis.call('GET', KEYS[2])
if not now and cursor > 0 then
  local t = redis.call('TIME')
  local seed = t[1] .. string.format('%06d', tonumber(t[2]))
  if tonumber(seed) < cursor then seed = ARGV[1] end
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
else
  local lost = redis.call('GET', KEYS[3])
  if lost then
    local f, t = string.match(lost, '^(%d+) (%d+)$')
    if f and cursor > tonumber(f) and cursor <= tonumber(t) then all = 1 end
  end
end`;

/**
 * KEYS: seq base, seq, lost range   ARGV: cursor.  Returns 1 when the cursor cannot be trusted (see CURSOR):
 * every channel of the reader must be reset.
 */
const CLAIM_CURSOR = new Script(`${CURSOR}
return all
`);

/**
 * Reads each stream after the cursor, with the sequence's current value in the same atomic step
 * (the position to continue from). A channel whose history cannot be proven to reach back to the
 * cursor is reported as reset instead of being replayed with a gap:
 * - trimmed (horizon above the cursor): reset, nothing replayed (the client reloads its state);
 * - expired or evicted and created again (gap above the cursor): reset, and what the stream holds
 *   now (all of it after the gap) is replayed;
 * - expired or evicted, or never kept (history size 0), with a last id above the cursor: reset.
 * A cursor older than the sequence's seed means Redis lost its data: every channel is reset and
 * what was published since the seed is replayed. A cursor ahead of the sequence, or in a range of
 * ids lost that way before, means a failover lost writes: every channel is reset (see CURSOR).
 *
 * KEYS: seq base, seq, lost range, history streams..., horizons..., gaps..., last ids...
 * ARGV: cursor, max entries per channel
 * Returns {all-reset, seq now, {reset, {envelope...}}...}
 */
const REPLAY = new Script(`${CURSOR}
local out = {all, now}
local n = (#KEYS - 3) / 4
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
  local envs = {}
  if replay then
    local entries = redis.call('XRANGE', stream, '(' .. from .. '-0', '+', 'COUNT', ARGV[2])
    for k = 1, #entries do envs[k] = entries[k][2][2] end
  end
  out[i + 2] = {reset, envs}
end
return out
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
 * Users are held to {@link CoreConfig.userPublishPerMinute} and {@link CoreConfig.userNewChannelsPerHour};
 * backends are not. `grant` is what the publishing connection's ticket granted (it opens `granted` namespaces).
 */
export async function publish(input: PublishInput, identity: Identity, deps: EventDeps, grant?: ChannelGrant): Promise<PublishResult> {
  const { ch, head, tail, idempotencyKey } = preparePublish(input, identity, deps.config, grant);
  const keys = new Keys(deps.config.keyPrefix);
  const user = identity.kind === 'user' ? identity.sub : undefined;
  const rate = user === undefined ? 0 : (deps.config.userPublishPerMinute ?? DEFAULT_USER_PUBLISH_PER_MINUTE);
  const quota = user === undefined ? 0 : (deps.config.userNewChannelsPerHour ?? DEFAULT_USER_NEW_CHANNELS_PER_HOUR);
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
    default:
      return { id: String(id), channel: ch.channel, envelope: extra as string, duplicate: false };
  }
}

/** What an idempotency key remembers of its event: a hash of channel, type and data (the envelope around id and time). */
function eventHash(head: string, tail: string): string {
  return createHash('sha256').update(head).update('\0').update(tail).digest('base64url');
}

/** Parses a cursor (`Last-Event-ID`, `lastEventId`, `since`, `cursor`). */
export function parseCursor(value: unknown): number {
  if (typeof value !== 'string' || !CURSOR_PATTERN.test(value)) {
    throw new RealtimeError('invalid_cursor', 'A cursor is the decimal id of the last event received.');
  }
  return Number(value);
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
  /** True when the replay stopped at `limit` events: read again from `position` for the rest. */
  readonly more: boolean;
}

/**
 * Reads what `channels` received after `cursor`, or which of them cannot be replayed: at most `limit` events (the
 * oldest first), so one request never reads a whole history into memory. Each channel's stream is read up to `limit`
 * entries; the first `limit` of their merge are then complete up to the last one returned.
 */
export async function replay(channels: readonly ParsedChannel[], cursor: number, deps: EventDeps, limit = Number.MAX_SAFE_INTEGER): Promise<ReplayResult> {
  const keys = new Keys(deps.config.keyPrefix);
  const max = Math.min(Math.max(1, limit), Math.max(1, ...channels.map((c) => c.policy.historySize)));
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
    [String(cursor), max],
  )) as [number, string, ...[number, string[]][]];
  const resets: string[] = [];
  const lists: string[][] = [];
  channels.forEach((c, i) => {
    const [reset, envs] = res[i + 2] as [number, string[]];
    if (reset === 1) resets.push(c.channel);
    if (envs.length) lists.push(envs);
  });
  let events = lists.length === 1 ? lists[0] : lists.flat().sort((a, b) => envelopeSeq(a) - envelopeSeq(b));
  // More after this page: the merge passed `limit`, or a channel filled a read cut short by `limit` (it may hold more).
  const more = events.length > limit || (max === limit && lists.some((l) => l.length === limit));
  if (events.length > limit) events = events.slice(0, limit);
  const last = events.length ? envelopeSeq(events[events.length - 1]) : cursor;
  return { events, resets, position: more ? last : Math.max(Number(res[1]), last, cursor), more };
}

/**
 * What a reader starting at `cursor` must be sent before going live: the replay after it, or, with
 * no cursor, nothing and the current position ("from now on").
 */
export async function backlog(channels: readonly ParsedChannel[], cursor: number | undefined, deps: EventDeps, limit?: number): Promise<ReplayResult> {
  if (cursor === undefined) return { events: [], resets: [], position: await currentCursor(deps), more: false };
  return replay(channels, cursor, deps, limit);
}

/**
 * For a reader that resumes from `cursor` without a replay (a WebSocket subscription whose floor is
 * below the cursor): true when the cursor is ahead of the sequence, or predates a loss of Redis
 * data, so the reader must reset its channels. The sequence is moved past the cursor in the same
 * step, so ids the reader has seen are never issued again.
 */
export async function claimCursor(cursor: number, deps: EventDeps): Promise<boolean> {
  const keys = new Keys(deps.config.keyPrefix);
  return Number(await CLAIM_CURSOR.run(deps.redis, [keys.seqBase, keys.seq, keys.seqLost], [String(cursor)])) === 1;
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
