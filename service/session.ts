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

/** A long-lived SSE stream or a long poll that answers once (`/live` WebSockets do not run as sessions: service/ws-socket.ts). */
export type SessionKind = 'stream' | 'poll';

/**
 * One client connection's delivery state, whatever its transport: the channels, the cursor already
 * delivered (`lastSeq`), the live events held while a replay runs, and when to recycle it. Every
 * event id comes from one sequence, so `lastSeq` alone removes duplicates between replay and live
 * delivery on every channel of the session. The session decides what to deliver; its transport
 * (service/transport.ts) encodes and writes it.
 */
export class Session implements Listener, TransportOwner {
  /** The last event id delivered (or the replay's position once it finished). */
  lastSeq = 0;
  /** Epoch milliseconds after which the session is recycled (cookie rotation); 0 for never. */
  closeAt = 0;
  /** True once the engine stopped tracking it (its peer left or it was answered). */
  released = false;
  /** Unregisters it from revocation tracking. */
  untrack?: () => void;
  /** Gives back the client's place under its caps (service/quotas.ts). */
  lease?: () => void;
  private held: LiveEvent[] | null = [];

  constructor(
    readonly kind: SessionKind,
    readonly transport: Transport,
    readonly channels: readonly string[],
    /** Shared by every session of a kind (no closures per connection). */
    private readonly policy: SessionPolicy,
  ) {
    transport.owner = this;
  }

  get closed(): boolean {
    return this.transport.closed;
  }

  onEvent(event: LiveEvent): void {
    if (this.transport.closed) return;
    if (this.held) {
      if (this.held.length >= this.policy.maxHeld) {
        this.held = [];
        this.policy.heldOverflow(this);
        return;
      }
      this.held.push(event);
      return;
    }
    if (event.seq <= this.lastSeq) return;
    this.lastSeq = event.seq;
    this.transport.event(event);
  }

  /** The transport's reader fell behind past its cap. */
  slow(): void {
    this.policy.slow(this);
  }

  /** Holds live events back again (a catch-up replay is about to run). */
  hold(): void {
    this.held ??= [];
  }

  /** Hands one replay page to the transport. */
  page(resets: readonly string[], envelopes: readonly string[]): void {
    if (!this.transport.closed && (resets.length || envelopes.length)) this.transport.page(resets, envelopes);
  }

  /**
   * The replay reached `position`: tells the transport, then delivers what arrived meanwhile (after
   * `position`) and switches to live delivery.
   */
  goLive(position: number, more = false): void {
    this.lastSeq = position;
    if (!this.transport.closed) this.transport.ready(position, this.channels, more);
    const held = this.held ?? [];
    this.held = null;
    for (const e of held) this.onEvent(e);
  }

  heartbeat(): void {
    if (!this.transport.closed) this.transport.heartbeat();
  }

  /** Ends the session: the transport says why on the wire (at most once). */
  end(ending: Ending): void {
    if (this.transport.closed) return;
    this.held = null;
    this.transport.end(ending);
  }

  /** The peer went away. */
  gone(): void {
    this.held = null;
    this.transport.gone();
  }
}
