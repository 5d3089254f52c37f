import type { BrokerSubscriber } from '../core/broker';
import { RealtimeError } from '../core/errors';
import { encodeCursor } from '../core/cursor';
import { envelopeSeq, envelopeType } from '../core/events';

/** Encodes a live event for one transport (e.g. the SSE frame); see {@link LiveEvent.encoded}. */
export type EventEncoder = (event: LiveEvent) => Buffer;

/**
 * One event as it arrives from Redis. Each transport's encoding of it is computed once and shared by
 * every connection that writes it.
 */
export class LiveEvent {
  readonly seq: number;
  private solo?: string;
  private encoder?: EventEncoder;
  private bytes?: Buffer;
  private others?: Map<EventEncoder, Buffer>;
  constructor(
    readonly channel: string,
    readonly envelope: string,
  ) {
    this.seq = envelopeSeq(envelope);
  }

  /**
   * The cursor of a connection of this event's channel alone, after the event (`core/cursor.ts`: anchored at its
   * position, `p1.<id in base 36>.`): the same for every such connection, so their SSE frame is shared.
   */
  get soloCursor(): string {
    return (this.solo ??= encodeCursor([this.seq]));
  }

  /** The event's type, read from the envelope. */
  get type(): string {
    return envelopeType(this.envelope);
  }

  /** `encode(this)`, computed on the first call per encoder and shared afterwards. */
  encoded(encode: EventEncoder): Buffer {
    if (this.encoder === encode) return this.bytes!;
    if (this.encoder === undefined) {
      this.encoder = encode;
      return (this.bytes = encode(this));
    }
    // A second transport on the same task (rare): a small map.
    this.others ??= new Map();
    let b = this.others.get(encode);
    if (!b) this.others.set(encode, (b = encode(this)));
    return b;
  }
}

/** Something that wants the live events of some channels: a session (service/session.ts). */
export interface Listener {
  onEvent(event: LiveEvent): void;
}

/**
 * This process's registry of live listeners, fed by the broker's subscriber (`core/broker.ts` `BrokerSubscriber`; on
 * Redis one connection, on a Redis Cluster one per shard): one subscription per channel when the first local listener
 * wants it, ended when the last one leaves.
 */
export class Hub {
  private readonly listeners = new Map<string, Set<Listener>>();
  private readonly subscribing = new Map<string, Promise<unknown>>();
  /**
   * Called after subscriptions lapsed and were confirmed again (events may have been missed meanwhile): `channels`
   * names them when only some were (one shard's on a cluster), absent when all were.
   */
  onResubscribed?: (channels?: readonly string[]) => void;
  /** Told when channels get their first local listener and lose their last (deployment-wide occupancy, service/occupancy.ts). */
  occupancy?: { held(channels: readonly string[]): void; left(channels: readonly string[]): void };
  /** Events handed to local listeners since the counter was last reset (for metrics). */
  deliveries = 0;
  /**
   * Bumped whenever a subscription may have lapsed: a channel was unsubscribed, or the subscriber
   * connection closed or came back. A {@link mark} from an older generation is void.
   */
  private generation = 0;
  /** Per subscribed channel, the id of the last event that arrived on it. */
  private readonly lastSeq = new Map<string, number>();
  /**
   * Per subscribed channel, its position as last read from Redis while its subscription stood ({@link learn}); dropped
   * when the subscription may lapse. With the last event that arrived on it since, it is the channel's position now.
   */
  private readonly known = new Map<string, number>();

  constructor(
    private readonly sub: BrokerSubscriber,
    /** Distinct channels subscribed at once (MAX_CHANNELS_PER_TASK). Defaults to unbounded. */
    readonly maxChannels = Number.POSITIVE_INFINITY,
  ) {
    sub.onMessage((channel, message) => {
      const set = this.listeners.get(channel);
      if (!set || set.size === 0) return;
      const event = new LiveEvent(channel, message);
      this.lastSeq.set(channel, event.seq);
      this.deliveries += set.size;
      for (const l of set) l.onEvent(event);
    });
    sub.onState((state, channels) => {
      this.generation++;
      this.known.clear();
      if (state === 'restored') this.onResubscribed?.(channels);
    });
  }

  /** Channels with at least one local listener. */
  get channelCount(): number {
    return this.listeners.size;
  }

  get ready(): boolean {
    return this.sub.ready;
  }

  /** True when subscribing `channels` keeps this process within `maxChannels` subscriptions. */
  canAdd(channels: readonly string[]): boolean {
    let fresh = 0;
    for (const c of channels) if (!this.listeners.has(c)) fresh++;
    return this.listeners.size + fresh <= this.maxChannels;
  }

  /**
   * Adds `listener` to `channels`; resolves once Redis confirmed every subscription. Throws
   * `unavailable` (adding nothing) when that would pass `maxChannels` distinct subscriptions.
   */
  async add(channels: readonly string[], listener: Listener): Promise<void> {
    if (!this.canAdd(channels)) {
      throw new RealtimeError('unavailable', `This task subscribes to its maximum of ${this.maxChannels} channels; retry shortly.`);
    }
    const waits: Promise<unknown>[] = [];
    const fresh: string[] = [];
    for (const c of channels) {
      let set = this.listeners.get(c);
      if (!set) {
        set = new Set();
        this.listeners.set(c, set);
        fresh.push(c);
      } else {
        const inFlight = this.subscribing.get(c);
        if (inFlight) waits.push(inFlight);
      }
      set.add(listener);
    }
    if (fresh.length) {
      this.occupancy?.held(fresh);
      const p = this.sub.subscribe(fresh);
      for (const c of fresh) this.subscribing.set(c, p);
      p.finally(() => {
        for (const c of fresh) if (this.subscribing.get(c) === p) this.subscribing.delete(c);
      }).catch(() => undefined);
      waits.push(p);
    }
    await Promise.all(waits);
  }

  /**
   * A mark for {@link addAt}, taken before a Redis command that reads the channels' positions: set
   * when every one of `channels` is subscribed now (confirmed by Redis, so that command runs after
   * the SUBSCRIBE), undefined otherwise.
   */
  mark(channels: readonly string[]): number | undefined {
    if (!this.sub.ready) return undefined;
    for (const c of channels) if (!this.listeners.has(c) || this.subscribing.has(c)) return undefined;
    return this.generation;
  }

  /**
   * Adds `listener` to `channels` without a Redis round trip, when it misses nothing by starting each channel at its
   * position in `positions` (read after `mark` was taken, in the order of `channels`): every channel stayed subscribed
   * since the mark, and no event above its position has arrived on it (one that arrives later is delivered).
   * Returns false, adding nothing, otherwise: then {@link add} and read the positions again.
   */
  addAt(channels: readonly string[], listener: Listener, mark: number, positions: readonly number[]): boolean {
    if (mark !== this.generation || !this.sub.ready) return false;
    for (let i = 0; i < channels.length; i++) {
      const c = channels[i];
      if (!this.listeners.has(c) || this.subscribing.has(c) || (this.lastSeq.get(c) ?? 0) > positions[i]) return false;
    }
    for (const c of channels) this.listeners.get(c)!.add(listener);
    return true;
  }

  /**
   * Records the positions of `channels` (in order) read from Redis by a command sent after `mark` was taken (see
   * {@link mark}): kept while each subscription stands, for {@link addCaughtUp}. Ignored when a subscription may have
   * lapsed since the mark.
   */
  learn(channels: readonly string[], mark: number | undefined, positions: readonly number[]): void {
    if (mark === undefined || mark !== this.generation || !this.sub.ready) return;
    for (let i = 0; i < channels.length; i++) {
      const c = channels[i];
      if (this.listeners.has(c) && !this.subscribing.has(c)) this.known.set(c, positions[i]);
    }
  }

  /**
   * Adds `listener` to `channels` without a Redis round trip when a reader at `cursor` (one position per channel, in
   * the order of `channels`) has missed nothing: each channel is subscribed, its position was read since its
   * subscription stands ({@link learn}), and the cursor is that position, or the id of the last event that arrived on
   * it since, whichever is higher. Every event above it is then still to arrive here: the listener gets it live. (The
   * reconnect storm of a task's clients on shared channels: after the first, none reads Redis to resume.) Returns false,
   * adding nothing, otherwise: then {@link add} and replay.
   */
  addCaughtUp(channels: readonly string[], listener: Listener, cursor: readonly number[]): boolean {
    if (!this.sub.ready || cursor.length !== channels.length) return false;
    for (let i = 0; i < channels.length; i++) {
      const c = channels[i];
      const k = this.known.get(c);
      if (k === undefined || this.subscribing.has(c) || Math.max(k, this.lastSeq.get(c) ?? 0) !== cursor[i]) return false;
    }
    for (const c of channels) this.listeners.get(c)!.add(listener);
    return true;
  }

  /** Removes `listener`; channels left without listeners are unsubscribed. */
  remove(channels: readonly string[], listener: Listener): void {
    const empty: string[] = [];
    for (const c of channels) {
      const set = this.listeners.get(c);
      if (!set) continue;
      set.delete(listener);
      if (set.size === 0) {
        this.listeners.delete(c);
        this.lastSeq.delete(c);
        this.known.delete(c);
        empty.push(c);
      }
    }
    if (empty.length) this.generation++;
    if (empty.length) this.occupancy?.left(empty);
    if (empty.length) this.sub.unsubscribe(empty).catch(() => undefined);
  }
}
