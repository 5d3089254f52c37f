import { maySubscribe, parseChannel, type ChannelGrant, type ParsedChannel } from './channels';
import { CORE_SETTINGS } from '../contract/settings';
import { RealtimeError } from './errors';
import { brokerOf, cursorCannotBeReal, envelopeSeq, impossibleCursor, parseCursor, type EventDeps } from './events';
import type { Identity } from './identity';
import { REPLAY_FRAME_BYTES } from './broker';

/**
 * The history API (`GET /history`): one channel's retained events, a page at a time, for trusted backends (IAM, on the
 * HTTP API) and ticket holders (on the tasks). It is the transports' replay (`Broker.replay`, the same Lua, coverage
 * rule and page bounds), asked for one channel, in either order.
 */

/** A history request, parsed. */
export interface HistoryQuery {
  readonly channel: ParsedChannel;
  /** Events after this id; absent: whatever the history holds. */
  readonly since?: number;
  /** Reverse only: events before this id (the `next` of the previous reverse page). */
  readonly before?: number;
  /** At most this many events (1 to the page's maximum). */
  readonly limit: number;
  /** Newest first. */
  readonly reverse: boolean;
}

/** One page of a channel's history. */
export interface HistoryPage {
  readonly channel: string;
  /** Serialised envelopes: oldest first, or newest first in reverse. */
  readonly events: readonly string[];
  /**
   * True when `since` was given and the history cannot be proven to reach back to it (the rule that sends `reset` on
   * every transport): events after `since` were lost, and the page holds only what is left (or nothing, when the
   * history was trimmed past it). Reload the state from a history read without `since`.
   */
  readonly reset: boolean;
  /** True when the page ended at its count or byte bound: ask again with `next` for the rest. */
  readonly more: boolean;
  /** With `more`: the `since` (forward) or `before` (reverse) of the next page. */
  readonly next?: string;
  /** The channel's position when the page was read: subscribe from here to miss nothing after a read that reached the newest event. */
  readonly position: string;
}

const LIMIT_PATTERN = /^\d{1,7}$/;

/**
 * Parses `channel`, `since`, `before`, `limit` and `reverse` (query parameters, absent as `null` or `undefined`);
 * `maxEvents` is the page's bound (REPLAY_MAX_EVENTS), also `limit`'s default. Throws a `400` naming the bad one.
 */
export function parseHistoryQuery(get: (name: string) => string | null | undefined, namespaces: EventDeps['config']['namespaces'], maxEvents: number): HistoryQuery {
  const channel = parseChannel(get('channel') ?? undefined, namespaces);
  const reverse = parseFlag(get('reverse'));
  const since = optionalCursor(get('since'));
  const before = optionalCursor(get('before'));
  if (before !== undefined && !reverse) throw new RealtimeError('bad_request', '`before` pages a reverse read; add reverse=true, or page forward with `since`.');
  const rawLimit = get('limit');
  let limit = maxEvents;
  if (rawLimit !== null && rawLimit !== undefined && rawLimit !== '') {
    limit = LIMIT_PATTERN.test(rawLimit) ? Number(rawLimit) : 0;
    if (limit < 1 || limit > maxEvents) throw new RealtimeError('bad_request', `\`limit\` must be an integer from 1 to ${maxEvents}.`);
  }
  return { channel, since, before, limit, reverse };
}

function parseFlag(v: string | null | undefined): boolean {
  if (v === null || v === undefined || v === '' || v === 'false' || v === '0') return false;
  if (v === 'true' || v === '1') return true;
  throw new RealtimeError('bad_request', '`reverse` is true or false.');
}

function optionalCursor(v: string | null | undefined): number | undefined {
  if (v === null || v === undefined || v === '') return undefined;
  const c = parseCursor(v);
  if (cursorCannotBeReal(c)) throw impossibleCursor();
  return c;
}

/** Refuses a reader who may not subscribe to the channel (the subscribe rule: namespace policy and the ticket's grant). */
export function assertMayReadHistory(identity: Identity, ch: ParsedChannel, grant?: ChannelGrant): void {
  if (!maySubscribe(identity, ch, grant)) {
    throw new RealtimeError('channel_not_granted', `Reading the history of "${ch.channel}" needs what subscribing to it needs (namespace "${ch.namespace}" is ${ch.policy.subscribe}).`);
  }
}

/**
 * Reads one page: at most `limit` events and the byte bound (REPLAY_MAX_BYTES, each event counting its envelope plus
 * the replay's frame), through the broker's replay.
 */
export async function readHistory(q: HistoryQuery, deps: EventDeps): Promise<HistoryPage> {
  const maxBytes = Math.max(1, deps.config.replayMaxBytes ?? CORE_SETTINGS.replayMaxBytes.default);
  const page = await brokerOf(deps).replay([{ channel: q.channel, cursor: q.since ?? 0 }], { maxEvents: q.limit, maxBytes, entryBytes: deps.config.maxPayloadBytes + REPLAY_FRAME_BYTES }, {
    reverse: q.reverse,
    before: q.before,
    held: q.since === undefined,
  });
  if (page === 'invalid') throw impossibleCursor();
  const last = page.events.length ? envelopeSeq(page.events[page.events.length - 1]) : undefined;
  return {
    channel: q.channel.channel,
    events: page.events,
    reset: q.since !== undefined && page.resets[0],
    more: page.more,
    next: page.more && last !== undefined ? String(last) : undefined,
    position: String(Math.max(page.positions[0], last ?? 0, q.since ?? 0)),
  };
}

/** The JSON answer of a page: `{"channel","events":[…],"reset","more","next"?,"position"}`, the envelopes as stored (not parsed again). */
export function historyBody(page: HistoryPage): string {
  const next = page.next === undefined ? '' : `,"next":${JSON.stringify(page.next)}`;
  return `{"channel":${JSON.stringify(page.channel)},"events":[${page.events.join(',')}],"reset":${page.reset},"more":${page.more}${next},"position":${JSON.stringify(page.position)}}`;
}
