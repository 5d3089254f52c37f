import type { ParsedChannel } from './channels';

/**
 * The broker: what the domain needs from the store that keeps a channel's history and carries its live events.
 * `core/events.ts` (validation, cursors, envelopes), `core/publishing.ts`, `core/history.ts` and the transports speak
 * to it; Redis is its implementation (`core/redis/channel-broker.ts`: Lua scripts over streams and pub/sub).
 * Positions are per channel (docs/DESIGN.md, "Positions per channel"): each channel orders its own events (ids are
 * Redis time in microseconds, above the channel's base, its epoch) and every call touches one channel's slot per
 * script, so it runs on one node and on a Redis Cluster alike.
 *
 * Every call is one atomic step per channel in the store: a publish is in the history and sent live together, and a
 * replay reads a channel's page and its position at the same instant.
 */
export interface PositionBroker {
  /** Appends the event to its channel's history and publishes it live, assigning its id (the channel's next offset). */
  publish(request: BrokerPublish): Promise<BrokerPublishOutcome>;
  /**
   * One page of what each channel received after its own cursor, merged in id order, or `invalid` when a cursor is
   * further ahead of the store's clock than {@link CLOCK_ALLOWANCE_US} (that channel's script wrote nothing).
   */
  replay(reads: readonly ChannelCursor[], budget: BrokerPageBudget, order?: BrokerReplayOptions): Promise<PositionPage | 'invalid'>;
  /** For a reader resuming one channel at its cursor without a replay: whether it must reset, and the channel's position. */
  claim(read: ChannelCursor): Promise<{ readonly reset: boolean; readonly position: number } | 'invalid'>;
  /** Each channel's position (a cursor meaning "from now on" on it); writes nothing. */
  positions(channels: readonly ParsedChannel[]): Promise<number[]>;
}

/** A reader's cursor on one channel. */
export interface ChannelCursor {
  readonly channel: ParsedChannel;
  readonly cursor: number;
  /**
   * True for one number standing for several channels (a plain decimal cursor from before positions were per
   * channel): above the channel's position it is not taken for a roll-back, so it resets nothing by itself.
   */
  readonly shared?: boolean;
}

/** One page of a replay on positions per channel. */
export interface PositionPage {
  /** Envelopes after each channel's cursor, in id order (descending in reverse). */
  readonly events: string[];
  /** Per channel (in the order given), true when its history cannot be proven to reach back to its cursor. */
  readonly resets: boolean[];
  /**
   * Per channel, where its reader continues from: its position when the page read it whole, else the id of its last
   * event in the page (or, when the page holds none of it, its cursor, moved up to its base when below it, or down to
   * the channel's position when above it). A reader continues with these as its own cursors (not `shared`).
   */
  readonly positions: number[];
  /** True when the page ended at its budget: read again from `positions` for the rest. */
  readonly more: boolean;
}

/**
 * Live delivery from the broker to this process (the hub's side, `service/hub.ts`): subscriptions per channel and the
 * messages that arrive on them. On Redis it is one subscriber connection (`SUBSCRIBE`), or on a Redis Cluster one per
 * shard (`SSUBSCRIBE`, sharded pub/sub), each reconnected on its own (`core/redis/subscriber.ts`).
 */
export interface BrokerSubscriber {
  /** Subscribes `channels` (channel names, not store keys); resolves once the store confirmed every one. */
  subscribe(channels: readonly string[]): Promise<void>;
  /** Ends the subscriptions of `channels`. */
  unsubscribe(channels: readonly string[]): Promise<void>;
  /** Sets the handler of live events: the channel name and the envelope as published. */
  onMessage(handler: (channel: string, envelope: string) => void): void;
  /**
   * Sets the handler of subscription lapses: `lapsed` when a connection carrying subscriptions was lost (events may
   * be missed from then on), `restored` once its subscriptions are confirmed again. `channels` names the channels
   * concerned when only some were (one shard's), and is absent when all were.
   */
  onState(handler: (state: 'lapsed' | 'restored', channels?: readonly string[]) => void): void;
  /** True while every subscription this process holds is live. */
  readonly ready: boolean;
}

/** A validated event for {@link PositionBroker.publish}: the envelope around the id and time the broker assigns. */
export interface BrokerPublish {
  readonly channel: ParsedChannel;
  /** The envelope up to its id: `{"channel":…,"id":"`. */
  readonly head: string;
  /** The envelope from after its id up to its time: `","type":…,"data":…,"ts":`. */
  readonly tail: string;
  /** An idempotency key, scoped to the principal that sent it, with a hash of the event (channel, type, data). */
  readonly idempotency?: { readonly principal: string; readonly key: string; readonly eventHash: string };
  /** A user's limits (absent for a backend): events per minute, new channels per hour, retained bytes per history TTL; 0 is unlimited. */
  readonly user?: { readonly sub: string; readonly publishesPerMinute: number; readonly newChannelsPerHour: number; readonly retainedBytes: number };
}

/** What a publish came to: published, an idempotent retry, or a refusal that wrote nothing. */
export type BrokerPublishOutcome =
  | { readonly kind: 'published'; readonly id: string; readonly envelope: string }
  /** The idempotency key matched the same event: its first id, nothing published again. */
  | { readonly kind: 'duplicate'; readonly id: string }
  /** The idempotency key was used for a different event (its id). */
  | { readonly kind: 'conflict'; readonly id: string }
  | { readonly kind: 'rate_limited' | 'channel_quota_exceeded' | 'retained_bytes_exceeded'; readonly retryAfterSeconds: number };

/** A replay page's bounds, resolved. */
export interface BrokerPageBudget {
  readonly maxEvents: number;
  /** Each event counts its envelope plus {@link REPLAY_FRAME_BYTES}; the first event is taken whatever its size. */
  readonly maxBytes: number;
  /** The largest entry (envelope plus frame) the history can hold: sizes the chunks read per channel. */
  readonly entryBytes: number;
}

/**
 * A replay's order and scope. Forward (the default, every transport's catch-up): oldest first after the cursor. Reverse (the
 * history API): newest first, from below `before` (the newest when absent) down to the cursor, with the same coverage
 * rule and budget.
 */
export interface BrokerReplayOptions {
  readonly reverse: boolean;
  /** Reverse only: read ids below this one (exclusive). */
  readonly before?: number;
  /** Read what each history holds even when it was trimmed past the cursor (its reset is still reported). */
  readonly held?: boolean;
}

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
/** Bytes a replayed event costs beyond its envelope in a page's budget: the SSE lines around it (`id:`, `event:` with a type of up to 64 characters, `data:`), or a poll answer's comma. */
export const REPLAY_FRAME_BYTES = 128;
