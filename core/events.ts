import type { CoreConfig } from './config';
import { mayPublish, parseChannel, type ChannelGrant, type ParsedChannel } from './channels';
import { RealtimeError } from './errors';
import type { Identity } from './identity';
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
 * One script appends to the channel's stream and publishes, so history and live delivery never
 * disagree. The id comes from one deployment-wide sequence, seeded from Redis time in microseconds
 * when missing (first use, or data lost), so ids only grow and one number is a cursor over every
 * channel. The envelope is serialised once (in Node, around the id and time Redis assigns).
 *
 * When the history is full, the id of the newest event trimmed from it is kept beside it (the
 * horizon), so a replay can tell whether a cursor reaches past what is retained.
 *
 * KEYS: history stream, seq, seq base, idempotency key, history horizon
 * ARGV: live channel, envelope head, envelope tail, history size, history TTL, idempotency TTL, use idempotency
 */
const PUBLISH = new Script(`
if ARGV[7] == '1' then
  local prev = redis.call('GET', KEYS[4])
  if prev then return {prev, 1} end
end
local t = redis.call('TIME')
if redis.call('EXISTS', KEYS[2]) == 0 then
  local seed = t[1] .. string.format('%06d', tonumber(t[2]))
  redis.call('SET', KEYS[2], seed)
  redis.call('SET', KEYS[3], seed)
end
local id = string.format('%.0f', redis.call('INCR', KEYS[2]))
local ts = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
local env = ARGV[2] .. id .. ARGV[3] .. ts .. '}'
local size = tonumber(ARGV[4])
if size == 0 then
  redis.call('SET', KEYS[5], id, 'EX', ARGV[5])
else
  local len = redis.call('XLEN', KEYS[1])
  if len >= size then
    local gone = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', len - size + 1)
    redis.call('SET', KEYS[5], string.match(gone[#gone][1], '^(%d+)'), 'EX', ARGV[5])
  end
  redis.call('XADD', KEYS[1], 'MAXLEN', '=', size, id .. '-0', 'e', env)
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  if len >= size then redis.call('EXPIRE', KEYS[5], ARGV[5]) end
end
redis.call('PUBLISH', ARGV[1], env)
if ARGV[7] == '1' then redis.call('SET', KEYS[4], id, 'EX', ARGV[6]) end
return {id, 0, env}
`);

/**
 * Reads each stream after the cursor, with the sequence's current value in the same atomic step
 * (the position to continue from). A channel whose trimmed (or disabled) history reaches past the
 * cursor is reported as reset instead of being replayed with a gap. A cursor older than the
 * sequence's seed means Redis lost its data: every channel is reset and what was published since
 * the seed is replayed.
 *
 * KEYS: seq base, seq, history streams..., history horizons...   ARGV: cursor, max entries per channel
 * Returns {all-reset, seq now, {reset, {envelope...}}...}
 */
const REPLAY = new Script(`
local cursor = tonumber(ARGV[1])
local from = ARGV[1]
local all = 0
local base = redis.call('GET', KEYS[1])
if base and cursor < tonumber(base) then
  all = 1
  cursor = tonumber(base)
  from = base
end
local now = redis.call('GET', KEYS[2]) or '0'
local out = {all, now}
local n = (#KEYS - 2) / 2
for i = 1, n do
  local horizon = redis.call('GET', KEYS[2 + n + i])
  if horizon and tonumber(horizon) > cursor then
    out[i + 2] = {1, {}}
  else
    local envs = {}
    local entries = redis.call('XRANGE', KEYS[2 + i], '(' .. from .. '-0', '+', 'COUNT', ARGV[2])
    for k = 1, #entries do envs[k] = entries[k][2][2] end
    out[i + 2] = {all, envs}
  end
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

/** Validates, appends to history and publishes live in one atomic step. Returns the event id. */
export async function publish(input: PublishInput, identity: Identity, deps: EventDeps, grant?: ChannelGrant): Promise<PublishResult> {
  const { ch, head, tail, idempotencyKey } = preparePublish(input, identity, deps.config, grant);
  const keys = new Keys(deps.config.keyPrefix);
  const res = (await PUBLISH.run(
    deps.redis,
    [keys.history(ch.channel), keys.seq, keys.seqBase, idempotencyKey ? keys.idempotency(ch.channel, idempotencyKey) : keys.seq, keys.horizon(ch.channel)],
    [keys.live(ch.channel), head, tail, ch.policy.historySize, ch.policy.historyTtlSeconds, IDEMPOTENCY_TTL_SECONDS, idempotencyKey ? '1' : '0'],
  )) as [string, number, string?];
  const [id, dup, envelope] = res;
  return dup === 1 ? { id: String(id), channel: ch.channel, duplicate: true } : { id: String(id), channel: ch.channel, envelope, duplicate: false };
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
  /** Where the reader continues from: the sequence when the replay ran (every event up to it was returned or reset). */
  readonly position: number;
}

/** Reads what `channels` received after `cursor`, or which of them cannot be replayed. */
export async function replay(channels: readonly ParsedChannel[], cursor: number, deps: EventDeps): Promise<ReplayResult> {
  const keys = new Keys(deps.config.keyPrefix);
  const max = Math.max(1, ...channels.map((c) => c.policy.historySize));
  const res = (await REPLAY.run(
    deps.redis,
    [keys.seqBase, keys.seq, ...channels.map((c) => keys.history(c.channel)), ...channels.map((c) => keys.horizon(c.channel))],
    [String(cursor), max],
  )) as [number, string, ...[number, string[]][]];
  const resets: string[] = [];
  const lists: string[][] = [];
  channels.forEach((c, i) => {
    const [reset, envs] = res[i + 2] as [number, string[]];
    if (reset === 1) resets.push(c.channel);
    if (envs.length) lists.push(envs);
  });
  const events = lists.length === 1 ? lists[0] : lists.flat().sort((a, b) => envelopeSeq(a) - envelopeSeq(b));
  const last = events.length ? envelopeSeq(events[events.length - 1]) : cursor;
  return { events, resets, position: Math.max(Number(res[1]), last, cursor) };
}

/**
 * What a reader starting at `cursor` must be sent before going live: the replay after it, or, with
 * no cursor, nothing and the current position ("from now on").
 */
export async function backlog(channels: readonly ParsedChannel[], cursor: number | undefined, deps: EventDeps): Promise<ReplayResult> {
  if (cursor === undefined) return { events: [], resets: [], position: await currentCursor(deps) };
  return replay(channels, cursor, deps);
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
