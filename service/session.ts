import { ConnectionPositions } from '../core/cursor';
import { envelopeChannel, envelopeSeq } from '../core/events';
import type { LiveEvent, Listener } from './hub';
import type { Ending, Transport, TransportOwner } from './transport';

/** What the sessions of one kind share: the held-events cap and what to do when a session overflows it or its reader is slow. */
export interface SessionPolicy {
  /** Live events held during a replay before `heldOverflow` is called (MAX_HELD_EVENTS; unbounded for polls). */
  readonly maxHeld: number;
  /** More than `maxHeld` live events wait for the session's replay to finish. */
  heldOverflow(session: Session): void;
  /** The session's reader fell behind past its transport's cap. */
  slow(session: Session): void;
}

/**
 * A long-lived SSE stream, a long poll that answers once, or a `/live` WebSocket (a stream whose
 * client subscribes and unsubscribes).
 */
export type SessionKind = 'stream' | 'poll' | 'socket';

/** One channel of a session. */
interface Subscription {
  /** Where its live delivery started: events up to it came (or come) from a replay. */
  floor: number;
  /** The last id delivered on it. */
  last: number;
  /** Its live events are held (a replay, or a publish acknowledgement, is under way). */
  holding: boolean;
}

/**
 * One client connection's delivery state, whatever its transport: a set of channel subscriptions,
 * each with its floor and the last id delivered on it, and the live events held while a replay runs
 * (in the order they arrived, whatever their channel). SSE streams and polls are the fixed-set case:
 * every channel is subscribed at open and goes live at once ({@link goLive}); a WebSocket's client
 * adds and removes channels, each going live on its own ({@link add}, {@link release}). Ids grow per
 * channel, so the last id per channel removes duplicates between replay and live delivery. A
 * unidirectional session (SSE, long poll) also keeps the connection's cursor over all its channels
 * (`core/cursor.ts` `ConnectionPositions`): the SSE `id:` of every event, `ready` and `reset`, and the
 * poll's `cursor`. The session decides what to deliver; its transport (service/transport.ts) encodes
 * and writes it.
 */
export class Session implements Listener, TransportOwner {
  /** Epoch milliseconds after which the session is recycled (cookie rotation); 0 for never. */
  closeAt = 0;
  /** True once the engine stopped tracking it (its peer left or it was answered). */
  released = false;
  /** Unregisters it from revocation tracking. */
  untrack?: () => void;
  /** Gives back the client's place under its caps (service/quotas.ts). */
  lease?: () => void;
  private readonly subs = new Map<string, Subscription>();
  /**
   * The channel a live event last came on and its subscription (none: look it up): a session of one channel finds it
   * with one comparison per event instead of a lookup in {@link subs} (a map lookup per delivery, 1.4 % of the
   * process's CPU time at 8k streams in `perf`). Dropped whenever {@link subs} changes.
   */
  private lastChannel?: string;
  private lastSub?: Subscription;
  /** Live events of holding subscriptions, in arrival order. */
  private held: LiveEvent[] = [];
  /** A unidirectional session's cursor over its channels (in the order of {@link channels}); none for a WebSocket. */
  private at?: ConnectionPositions;
  /**
   * A catch-up after a lapse was asked for ({@link hold} of every channel) and has not begun to read ({@link resyncing}):
   * a replay that began before it (the session's setup, an earlier catch-up) goes live at its positions without
   * releasing what is held, which is the later catch-up's to deliver after its own replay.
   */
  private resyncDue = false;

  constructor(
    readonly kind: SessionKind,
    readonly transport: Transport,
    /** The channels it opens with, all holding until {@link goLive}. */
    channels: readonly string[],
    /** Shared by every session of a kind (no closures per connection). */
    private readonly policy: SessionPolicy,
  ) {
    transport.owner = this;
    for (const c of channels) this.subs.set(c, { floor: 0, last: 0, holding: true });
  }

  get closed(): boolean {
    return this.transport.closed;
  }

  /** The channels subscribed now. */
  get channels(): string[] {
    return [...this.subs.keys()];
  }

  /** The last id delivered on each channel (or its replay's position), in the order of {@link channels}. */
  get positions(): number[] {
    return [...this.subs.values()].map((s) => s.last);
  }

  /** How many channels are subscribed. */
  get size(): number {
    return this.subs.size;
  }

  /** The floor of the subscription to `channel`; undefined when there is none. */
  floor(channel: string): number | undefined {
    return this.subs.get(channel)?.floor;
  }

  onEvent(event: LiveEvent): void {
    if (this.transport.closed) return;
    let sub = this.lastSub;
    if (event.channel !== this.lastChannel) {
      sub = this.subs.get(event.channel);
      if (!sub) return;
      this.lastChannel = event.channel;
      this.lastSub = sub;
    }
    if (!sub) return;
    if (sub.holding) {
      if (this.held.length >= this.policy.maxHeld) {
        this.held = [];
        this.policy.heldOverflow(this);
        return;
      }
      this.held.push(event);
      return;
    }
    if (event.seq <= sub.last) return;
    sub.last = event.seq;
    const at = this.at;
    if (!at) return this.transport.event(event);
    // One channel: the cursor is the event's own (computed once per event, shared by every such stream); `at` is
    // rebuilt from the subscriptions' last ids before it is read again (startAt, goLive).
    if (this.subs.size === 1) return this.transport.event(event, event.soloCursor);
    at.set(event.channel, event.seq);
    this.transport.event(event, at.cursor);
  }

  /** The transport's reader fell behind past its cap. */
  slow(): void {
    this.policy.slow(this);
  }

  /**
   * Holds the live events of `channel` (every channel when none is named: a catch-up replay is about
   * to run). Returns false when there is no such subscription or it holds already.
   */
  hold(channel?: string): boolean {
    if (channel === undefined) {
      for (const sub of this.subs.values()) sub.holding = true;
      this.resyncDue = true;
      return true;
    }
    const sub = this.subs.get(channel);
    if (!sub || sub.holding) return false;
    sub.holding = true;
    return true;
  }

  /** The catch-up asked for by {@link hold} begins to read from {@link positions}: its {@link goLive} releases what is held. */
  resyncing(): void {
    this.resyncDue = false;
  }

  /** Adds a subscription to `channel`, holding its live events until its floor is known ({@link setFloor}) and it is {@link release}d. */
  add(channel: string): void {
    this.lastChannel = this.lastSub = undefined;
    this.subs.set(channel, { floor: Number.MAX_SAFE_INTEGER, last: Number.MAX_SAFE_INTEGER, holding: true });
  }

  /** Live delivery on `channel` starts above `floor`. */
  setFloor(channel: string, floor: number): void {
    const sub = this.subs.get(channel);
    if (sub) sub.floor = sub.last = floor;
  }

  /** Ends the subscription to `channel` (and drops what it held); false when there was none. */
  remove(channel: string): boolean {
    if (!this.subs.delete(channel)) return false;
    this.lastChannel = this.lastSub = undefined;
    if (this.held.length) this.held = this.held.filter((e) => e.channel !== channel);
    return true;
  }

  /**
   * A unidirectional session's replay starts from `positions` (one per channel, in the order of {@link channels}):
   * the client's cursor, or the channels' positions when it had none.
   */
  startAt(positions: readonly number[]): void {
    if (this.transport.unidirectional) this.at = new ConnectionPositions(this.channels, positions);
  }

  /** Hands one replay page to the transport (with the connection's cursor before the resets and after each event). */
  page(resets: readonly string[], envelopes: readonly string[]): void {
    if (this.transport.closed || (!resets.length && !envelopes.length)) return;
    const at = this.at;
    if (!at) return this.transport.page(resets, envelopes);
    const before = at.cursor;
    const after = envelopes.map((env) => {
      at.set(envelopeChannel(env), envelopeSeq(env));
      return at.cursor;
    });
    this.transport.page(resets, envelopes, { resets: before, events: after });
  }

  /**
   * The replay reached `positions` (one per channel, in the order of {@link channels}): tells the transport, then
   * delivers what arrived meanwhile (after each channel's position) and switches to live delivery; unless a catch-up
   * after a lapse is due ({@link hold}), which reads on from `positions` and releases after its own replay.
   */
  goLive(positions: readonly number[], more = false): void {
    let i = 0;
    for (const sub of this.subs.values()) sub.floor = sub.last = positions[i++] ?? 0;
    const at = this.transport.unidirectional ? new ConnectionPositions(this.channels, positions) : undefined;
    this.at = at;
    if (!this.transport.closed) this.transport.ready(at?.cursor ?? '', this.channels, more);
    if (!this.resyncDue) this.release();
  }

  /**
   * Resumes a stream of one channel from events this process holds (`Hub.addCaughtUp`, none when it missed nothing):
   * each is written as a live event is (one channel: its bytes shared by every stream that gets it), then `ready` at
   * `positions`, after the last of them, and live delivery.
   */
  resume(events: readonly LiveEvent[], positions: readonly number[]): void {
    for (const e of events) if (!this.transport.closed) this.transport.event(e, e.soloCursor);
    this.goLive(positions);
  }

  /**
   * Delivers what `channel` held (every channel's when none is named), in order, and goes live on it;
   * what other channels still hold stays held.
   */
  release(channel?: string): void {
    for (const [c, sub] of this.subs) if (channel === undefined || c === channel) sub.holding = false;
    if (this.held.length === 0) return;
    const held = this.held;
    this.held = [];
    for (const e of held) this.onEvent(e);
  }

  heartbeat(): void {
    if (!this.transport.closed) this.transport.heartbeat();
  }

  /** Ends the session: the transport says why on the wire (at most once). */
  end(ending: Ending): void {
    if (this.transport.closed) return;
    this.held = [];
    this.transport.end(ending);
  }

  /** The peer went away. */
  gone(): void {
    this.held = [];
    this.transport.gone();
  }
}
