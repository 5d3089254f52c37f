import { createHash } from 'node:crypto';
import { CORE_SETTINGS } from '../contract/settings';
import { type CoreConfig } from './config';
import { mayPublish, parseChannel, type ChannelGrant, type ParsedChannel } from './channels';
import { RealtimeError } from './errors';
import { assertDataDepth } from './json-depth';
import { describeIdentity, type Identity } from './identity';
import { PRESENCE_TYPE_PREFIX, presenceMode } from './presence';
import { ENVELOPE_ADDED_BYTES, REPLAY_FRAME_BYTES, type ChannelCursor, type PositionBroker } from './broker';
import type { ConnectionCursor } from './cursor';
import type { RedisLike } from './redis/client';
import { RedisChannelBroker } from './redis/channel-broker';

/** What every transport delivers: `{channel, id, type, data, ts, prev}`. */
export interface Envelope<T = unknown> {
  readonly channel: string;
  /** The event's offset on its channel: a decimal integer (Redis time in microseconds, growing per channel). */
  readonly id: string;
  readonly type: string;
  readonly data: T;
  /** Milliseconds since the epoch, Redis server time at publish. */
  readonly ts: number;
  /** The channel's previous event id ("0" for its first): a client holding another id missed events between. */
  readonly prev: string;
}

export const TYPE_PATTERN = /^[A-Za-z][A-Za-z0-9_.:-]{0,63}$/;
/** Event types the transports use for their own signals. */
export const RESERVED_TYPES = new Set(['ready', 'reset', 'error', 'pong', 'subscribed', 'unsubscribed']);
const IDEMPOTENCY_PATTERN = /^[\x21-\x7e]{1,128}$/;
/** Digits of one channel's event id (a WebSocket `since`, the history API's `since`): below 2^53. */
const MAX_ID_DIGITS = 16;
const CURSOR_PATTERN = new RegExp(`^\\d{1,${MAX_ID_DIGITS}}$`);

/** Default of REPLAY_MAX_EVENTS: events in one replay page. */
export const DEFAULT_REPLAY_MAX_EVENTS = 1000;

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
  /** Where events are kept and carried. Defaults to the {@link RedisChannelBroker} over `redis`. */
  readonly broker?: PositionBroker;
}

/**
 * The deps' broker, else Redis's over the deps' client (positions per channel; live events with `SPUBLISH` on a Redis
 * Cluster, `PUBLISH` on one node).
 */
export function brokerOf(deps: EventDeps): PositionBroker {
  if (deps.broker) return deps.broker;
  return new RedisChannelBroker(deps.redis, deps.config);
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
  if (input.type.startsWith(PRESENCE_TYPE_PREFIX) && presenceMode(ch) !== 'off') {
    throw new RealtimeError('invalid_type', `\`type\` "${input.type}" is reserved: namespace "${ch.namespace}" has presence on, and only the service appends presence.* events.`);
  }
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
  const size = Buffer.byteLength(head) + Buffer.byteLength(tail) + ENVELOPE_ADDED_BYTES;
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
  const user = identity.kind === 'user' ? identity.sub : undefined;
  const rate = user === undefined ? 0 : (deps.config.userPublishPerMinute ?? CORE_SETTINGS.userPublishPerMinute.default);
  const quota = user === undefined ? 0 : (deps.config.userNewChannelsPerHour ?? CORE_SETTINGS.userNewChannelsPerHour.default);
  const retained = user === undefined ? 0 : (deps.config.userRetainedBytes ?? CORE_SETTINGS.userRetainedBytes.default);
  const r = await brokerOf(deps).publish({
    channel: ch,
    head,
    tail,
    idempotency: idempotencyKey ? { principal: describeIdentity(identity), key: idempotencyKey, eventHash: eventHash(head, tail) } : undefined,
    user: user === undefined ? undefined : { sub: user, publishesPerMinute: rate, newChannelsPerHour: quota, retainedBytes: retained },
  });
  switch (r.kind) {
    case 'duplicate':
      return { id: r.id, channel: ch.channel, duplicate: true };
    case 'conflict':
      throw new RealtimeError(
        'idempotency_conflict',
        `idempotencyKey ${JSON.stringify(idempotencyKey)} was already used for a different event (id ${r.id}); send a new key for a new event, or the same channel, type and data to retry.`,
      );
    case 'rate_limited':
      throw new RealtimeError('rate_limited', `At most ${rate} events per minute per user; retry in ${r.retryAfterSeconds} s.`, { retryAfterSeconds: r.retryAfterSeconds });
    case 'channel_quota_exceeded':
      throw new RealtimeError(
        'channel_quota_exceeded',
        `At most ${quota} new channels per hour per user; publish to a channel that already has events, or retry in ${r.retryAfterSeconds} s.`,
        { retryAfterSeconds: r.retryAfterSeconds },
      );
    case 'retained_bytes_exceeded':
      throw new RealtimeError(
        'retained_bytes_exceeded',
        `Redis keeps at most ${retained} bytes of events per user in namespace "${ch.namespace}" per ${ch.policy.historyTtlSeconds} s (its history TTL); send smaller events or a reference to the data, or retry in ${r.retryAfterSeconds} s.`,
        { retryAfterSeconds: r.retryAfterSeconds },
      );
    case 'published':
      return { id: r.id, channel: ch.channel, envelope: r.envelope, duplicate: false };
  }
}

/** What an idempotency key remembers of its event: a hash of channel, type and data (the envelope around id and time). */
function eventHash(head: string, tail: string): string {
  return createHash('sha256').update(head).update('\0').update(tail).digest('base64url');
}

/**
 * Parses one channel's cursor (a WebSocket `since`, the history API's `since`/`before`): an event id, 1 to 16 decimal
 * digits. A connection's cursor over several channels (SSE, long poll) is `core/cursor.ts`' `decodeCursor`. See also
 * {@link cursorCannotBeReal}.
 */
export function parseCursor(value: unknown): number {
  if (typeof value !== 'string' || !CURSOR_PATTERN.test(value)) {
    throw new RealtimeError('invalid_cursor', 'A cursor is the decimal id of the last event received.');
  }
  return Number(value);
}

/**
 * How far ahead of this process's clock a cursor may be before {@link cursorCannotBeReal} refuses it without asking
 * Redis: 60 s, looser than `CLOCK_ALLOWANCE_US` (`core/broker.ts`) because this clock is not the one that issued the ids (a task's
 * or a Lambda's clock a little behind Redis's must not refuse a client that just received an id). Redis decides the
 * rest with its own clock.
 */
export const LOCAL_CLOCK_ALLOWANCE_US = 60_000_000;

/**
 * True when `cursor` cannot be an id this deployment issued, judged without a round trip: past 2^53 (no id is), or
 * further ahead of this process's clock than {@link LOCAL_CLOCK_ALLOWANCE_US} (ids are Redis time in microseconds).
 * The replay and claim scripts then check it against Redis time with `CLOCK_ALLOWANCE_US` and write nothing
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
  /** Envelopes after each channel's cursor, in id order (merged across channels), as serialised at publish. */
  readonly events: string[];
  /** Channels whose history no longer reaches back to their cursor: the client must reload their state. */
  readonly resets: string[];
  /**
   * Per channel, in the order given: where its reader continues from. Its position when the page read it whole (every
   * event up to it was returned or reset), else, when `more` is true, the id of its last event returned (or its cursor).
   */
  readonly positions: number[];
  /** True when the page ended at its count or byte budget: read again from `positions` for the rest. */
  readonly more: boolean;
}

/**
 * A reader's place on its channels: one position per channel (in the order of the channels it goes with), or a decoded
 * connection cursor (`core/cursor.ts`: `shared` for a plain decimal from before positions were per channel).
 */
export type Cursors = readonly number[] | ConnectionCursor;

/** The reads of `channels` at `cursor` (one position per channel), refusing a position that cannot be real. */
export function channelCursors(channels: readonly ParsedChannel[], cursor: Cursors): ChannelCursor[] {
  const positions = 'positions' in cursor ? cursor.positions : cursor;
  const shared = 'shared' in cursor && cursor.shared;
  if (positions.length !== channels.length) throw new RealtimeError('invalid_cursor', `The cursor has ${positions.length} positions for ${channels.length} channels.`);
  return channels.map((channel, i) => {
    if (cursorCannotBeReal(positions[i])) throw impossibleCursor();
    return shared ? { channel, cursor: positions[i], shared } : { channel, cursor: positions[i] };
  });
}

/** A replay page's budget: events and bytes (each event counts its envelope plus {@link REPLAY_FRAME_BYTES}). */
export interface PageBudget {
  /** Defaults to {@link DEFAULT_REPLAY_MAX_EVENTS}. */
  readonly maxEvents?: number;
  /** Defaults to the config's `replayMaxBytes`, or `CORE_SETTINGS.replayMaxBytes.default`. */
  readonly maxBytes?: number;
}

/**
 * Reads one page of what each of `channels` received after its own position in `cursor`, or which of them cannot be
 * replayed: the oldest events first, until `limit` events or the byte budget (REPLAY_MAX_BYTES), so one request never
 * reads a whole history into memory, and Redis reads little more than the page (see `RedisChannelBroker.replay`: one
 * single-slot script per channel). The rules are per channel (docs/DESIGN.md, "Positions per channel"): one channel's
 * reset never resets another. Throws `invalid_cursor`, writing nothing, for a position that cannot be real (see
 * {@link cursorCannotBeReal}, then Redis's clock).
 */
export async function replay(channels: readonly ParsedChannel[], cursor: Cursors, deps: EventDeps, limit: number | PageBudget = {}): Promise<ReplayResult> {
  const reads = channelCursors(channels, cursor);
  const budget = typeof limit === 'number' ? { maxEvents: limit } : limit;
  const maxEvents = Math.max(1, budget.maxEvents ?? DEFAULT_REPLAY_MAX_EVENTS);
  const maxBytes = Math.max(1, budget.maxBytes ?? deps.config.replayMaxBytes ?? CORE_SETTINGS.replayMaxBytes.default);
  const page = await brokerOf(deps).replay(reads, { maxEvents, maxBytes, entryBytes: deps.config.maxPayloadBytes + REPLAY_FRAME_BYTES });
  if (page === 'invalid') throw impossibleCursor();
  const resets = channels.filter((_, i) => page.resets[i]).map((c) => c.channel);
  return { events: page.events, resets, positions: page.positions, more: page.more };
}

/**
 * What a reader starting at `cursor` must be sent before going live: the replay after it, or, with no cursor, nothing
 * and the channels' current positions ("from now on").
 */
export async function backlog(channels: readonly ParsedChannel[], cursor: Cursors | undefined, deps: EventDeps, limit?: number | PageBudget): Promise<ReplayResult> {
  if (cursor === undefined) return { events: [], resets: [], positions: await currentCursor(channels, deps), more: false };
  return replay(channels, cursor, deps, limit);
}

/**
 * For a reader that resumes `channel` from `cursor` without a replay (a WebSocket subscription whose floor is below the
 * cursor): `reset` when the cursor is ahead of the channel's position (a failover lost its last writes: the range is
 * recorded as lost in the channel's slot, so ids the reader has seen are never issued again on it), in a range lost
 * before, or from an earlier epoch of the channel; `position` is where the reader continues. Throws `invalid_cursor`
 * (nothing written) for a cursor that cannot be real.
 */
export async function claimCursor(channel: ParsedChannel, cursor: number, deps: EventDeps): Promise<{ reset: boolean; position: number }> {
  if (cursorCannotBeReal(cursor)) throw impossibleCursor();
  const r = await brokerOf(deps).claim({ channel, cursor });
  if (r === 'invalid') throw impossibleCursor();
  return r;
}

/** The current position of each of `channels` (in order): a cursor that means "from now on". Writes nothing. */
export function currentCursor(channels: readonly ParsedChannel[], deps: EventDeps): Promise<number[]> {
  return brokerOf(deps).positions(channels);
}

const ID_IN_ENVELOPE = /"id":"(\d+)"/;

/** Reads the id out of a serialised envelope without parsing the whole payload. */
export function envelopeSeq(envelope: string): number {
  // The id follows the channel, whose grammar cannot contain quotes, so the first match is the id.
  const m = ID_IN_ENVELOPE.exec(envelope);
  return m ? Number(m[1]) : 0;
}

/** Reads the channel out of a serialised envelope (it comes first; its grammar has no quotes). */
export function envelopeChannel(envelope: string): string {
  return envelope.slice(12, envelope.indexOf('"', 12));
}

/** Reads the type out of a serialised envelope (it follows the id; its grammar has no quotes). */
export function envelopeType(envelope: string): string {
  const i = envelope.indexOf('","type":"');
  if (i < 0) return 'message';
  const start = i + 10;
  return envelope.slice(start, envelope.indexOf('"', start));
}
