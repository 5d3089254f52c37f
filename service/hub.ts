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

/**
 * What this process holds of a subscribed channel's recent history: every event with an id in (`from`, `to`], in order,
 * where `to` is the channel's position now (each event above it is still to arrive, the subscription standing).
 */
interface Tail {
  from: number;
  to: number;
  readonly events: LiveEvent[];
  /** Events it keeps at most: the channel's history size within the hub's limit; 0 (only the position) unless learnt from a replay. */
  readonly max: number;
  /** The channel's history TTL, ms: past it since the last event arrived (or the replay was read), Redis may have dropped them. */
  readonly ttlMs: number;
  /** When the last event arrived or the replay was read, epoch ms. */
  touched: number;
}

/** What the hub's tails may hold: events per channel (at most a replay page, REPLAY_MAX_EVENTS) and bytes in all. */
export interface TailLimits {
  readonly maxEvents: number;
  readonly maxBytes: number;
}

/**
 * 256 events per channel, 8 MiB in all: a reconnect storm's clients missed seconds of a channel, and the tail is what
 * they are caught up from without a read; a client that missed more replays from Redis.
 */
export const DEFAULT_TAIL_LIMITS: TailLimits = { maxEvents: 256, maxBytes: 8 * 1024 * 1024 };

const eventBytes = (e: LiveEvent): number => 2 * e.envelope.length;

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
   * Per subscribed channel, its {@link Tail}: its position as read from Redis while its subscription stood ({@link learn})
   * and the events above the start of that read's replay, those that arrived since included. Dropped when the
   * subscription may lapse.
   */
  private readonly tails = new Map<string, Tail>();
  /** What the tails hold, in bytes (twice each envelope's length: the string and its encoding). */
  private tailBytes = 0;

  constructor(
    private readonly sub: BrokerSubscriber,
    /** Distinct channels subscribed at once (MAX_CHANNELS_PER_TASK). Defaults to unbounded. */
    readonly maxChannels = Number.POSITIVE_INFINITY,
    /** What the tails may hold: events per channel (at most a replay page) and bytes in all. */
    private readonly tailLimits: TailLimits = DEFAULT_TAIL_LIMITS,
    /** Milliseconds since the epoch (a tail's TTL). */
    private readonly now: () => number = Date.now,
  ) {
    sub.onMessage((channel, message) => {
      const set = this.listeners.get(channel);
      if (!set || set.size === 0) return;
      const event = new LiveEvent(channel, message);
      this.lastSeq.set(channel, event.seq);
      const tail = this.tails.get(channel);
      if (tail && event.seq > tail.to) {
        const now = this.now();
        // Quiet past the history's TTL: Redis may have let the events go, and a replay would not give them either.
        if (tail.events.length && now - tail.touched > tail.ttlMs) this.forget(tail, tail.events.length);
        tail.events.push(event);
        tail.to = event.seq;
        tail.touched = now;
        this.tailBytes += eventBytes(event);
        this.trim(tail);
      }
      this.deliveries += set.size;
      for (const l of set) l.onEvent(event);
    });
    sub.onState((state, channels) => {
      this.generation++;
      this.tails.clear();
      this.tailBytes = 0;
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
   * lapsed since the mark. `replayed`: that command was the whole replay of one channel (`channels` has one) from
   * `from`, with no reset: its events (`envelopes`, in order) are every event of the channel above `from` up to the
   * position, and are kept with it, and those that arrive later, within the channel's history (`keep` events, for
   * `ttlMs` after the last) and the tail limits, so a reader behind the position is caught up from here.
   */
  learn(channels: readonly string[], mark: number | undefined, positions: readonly number[], replayed?: { from: number; envelopes: readonly string[]; keep: number; ttlMs: number }): void {
    if (mark === undefined || mark !== this.generation || !this.sub.ready) return;
    for (let i = 0; i < channels.length; i++) {
      const c = channels[i];
      if (!this.listeners.has(c) || this.subscribing.has(c)) continue;
      const position = positions[i];
      const last = this.lastSeq.get(c) ?? 0;
      const old = this.tails.get(c);
      // Events above the position arrived before the read's answer: the channel is at the last of them now, and what
      // lies between is not here. A tail reaching lower already (complete, and followed since) stays.
      if (last > position) {
        if (!old) this.tails.set(c, { from: last, to: last, events: [], max: 0, ttlMs: 0, touched: 0 });
        continue;
      }
      const history = replayed && channels.length === 1 && replayed.from <= position ? replayed : undefined;
      const from = history ? history.from : position;
      if (old && old.from <= from && old.max >= (history?.keep ?? 0)) continue;
      if (old) this.dropTail(c);
      const events = history && from < position ? history.envelopes.map((e) => new LiveEvent(c, e)) : [];
      const max = history ? Math.min(history.keep, this.tailLimits.maxEvents) : 0;
      const tail: Tail = { from, to: position, events, max, ttlMs: history?.ttlMs ?? 0, touched: this.now() };
      for (const e of events) this.tailBytes += eventBytes(e);
      this.tails.set(c, tail);
      this.trim(tail);
    }
  }

  /**
   * Adds `listener` to `channels` without a Redis round trip when what a reader at `cursor` (one position per channel,
   * in the order of `channels`) missed is here: each channel is subscribed and its position was read since its
   * subscription stands ({@link learn}); the cursor is that position or the id of the last event that arrived since
   * (nothing missed), or, for a reader of one channel when `maxEvents` allows, a position within the channel's
   * {@link Tail} (its missed events are the tail's above the cursor, at most `maxEvents`). Every event above the
   * returned positions is still to arrive here: the listener gets it live. (The reconnect storm of a task's clients on
   * shared channels: after the first, none reads Redis to resume, and the events they missed are encoded once for all
   * of them.) Returns the missed events, in order, and the positions after them; undefined, adding nothing, otherwise:
   * then {@link add} and replay.
   */
  addCaughtUp(channels: readonly string[], listener: Listener, cursor: readonly number[], maxEvents = 0): { events: LiveEvent[]; positions: number[] } | undefined {
    const found = this.heldSince(channels, cursor, maxEvents);
    if (found) for (const c of channels) this.listeners.get(c)!.add(listener);
    return found;
  }

  /**
   * What a reader at `cursor` on `channels` missed, when it is here ({@link addCaughtUp}'s rule), without adding a
   * listener: for one that listens already and held its live events while the subscription lapsed (a catch-up after the
   * subscriber came back).
   */
  heldSince(channels: readonly string[], cursor: readonly number[], maxEvents = 0): { events: LiveEvent[]; positions: number[] } | undefined {
    if (!this.sub.ready || cursor.length !== channels.length) return undefined;
    let events: LiveEvent[] = [];
    const positions: number[] = [];
    for (let i = 0; i < channels.length; i++) {
      const c = channels[i];
      const tail = this.tails.get(c);
      if (tail === undefined || this.subscribing.has(c)) return undefined;
      const at = cursor[i];
      if (at !== tail.to) {
        if (channels.length !== 1 || at < tail.from || at > tail.to || this.now() - tail.touched > tail.ttlMs) return undefined;
        const start = tail.events.findIndex((e) => e.seq > at);
        if (start < 0 || tail.events.length - start > maxEvents) return undefined;
        events = tail.events.slice(start);
      }
      positions.push(tail.to);
    }
    return { events, positions };
  }

  /** Keeps `tail` within the limits: its oldest events go first (its start moves up to the last one dropped). */
  private trim(tail: Tail): void {
    let n = Math.max(0, tail.events.length - tail.max);
    let bytes = this.tailBytes;
    for (let i = 0; i < n; i++) bytes -= eventBytes(tail.events[i]);
    while (n < tail.events.length && bytes > this.tailLimits.maxBytes) bytes -= eventBytes(tail.events[n++]);
    if (n) this.forget(tail, n);
  }

  /** Drops the `n` oldest events of `tail`: it starts at the last of them. */
  private forget(tail: Tail, n: number): void {
    const gone = tail.events.splice(0, n);
    for (const e of gone) this.tailBytes -= eventBytes(e);
    tail.from = gone[gone.length - 1].seq;
  }

  private dropTail(channel: string): void {
    const tail = this.tails.get(channel);
    if (!tail) return;
    for (const e of tail.events) this.tailBytes -= eventBytes(e);
    this.tails.delete(channel);
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
        this.dropTail(c);
        empty.push(c);
      }
    }
    if (empty.length) this.generation++;
    if (empty.length) this.occupancy?.left(empty);
    if (empty.length) this.sub.unsubscribe(empty).catch(() => undefined);
  }
}
