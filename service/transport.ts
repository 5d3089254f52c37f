import type { LiveEvent } from './hub';

/**
 * Why a session ends, as the session engine decides it; each transport encodes it its own way (an
 * SSE stream: `retry:` and a comment; a long poll: its answer now, or 401).
 */
export type EndReason =
  /** The task is draining: reconnect elsewhere and resume by id. */
  | 'drain'
  /** The service is closing. */
  | 'shutdown'
  /** Recycled before its reconnect cookie expires: reconnect with it and get a fresh one. */
  | 'recycle'
  /** The user's sessions were revoked (POST /revoke): do not come back with this session. */
  | 'revoked'
  /** More live events arrived during a replay than MAX_HELD_EVENTS: reconnect and resume by id. */
  | 'held-overflow'
  /** The reader fell behind past MAX_QUEUED_BYTES: reconnect and resume by id. */
  | 'slow'
  /** Setting the session up or catching it up failed: retry later. */
  | 'failed';

export interface Ending {
  readonly reason: EndReason;
  /** Reconnect delay to suggest, in milliseconds (jittered by the engine); none: the transport sends no hint. */
  readonly retryMs?: number;
  /** A short code to pass on (e.g. the error code of a failed setup). */
  readonly detail?: string;
}

/** What a transport reports back to its session. */
export interface TransportOwner {
  /** The peer stopped reading: its backlog passed the transport's cap. */
  slow(): void;
}

/**
 * The seam between a session (what to deliver, service/session.ts) and the wire (how to encode and
 * write it). A session hands its transport, in this order: replay pages, then `ready`, then live
 * events and heartbeats, and finally `end`; or the peer goes away (`gone`). Implementations: the SSE
 * stream (service/sse-transport.ts) and the long poll (service/poll-transport.ts); a WebSocket
 * transport on the tasks would be a third.
 */
export interface Transport {
  /** True once the transport ended or its peer went away: nothing more is written. */
  readonly closed: boolean;
  /** Set by the session that drives it; told when the peer stopped reading and its backlog passed the cap. */
  owner?: TransportOwner;
  /** One page of a replay: channels whose history cannot cover the cursor, then the envelopes after it, oldest first. */
  page(resets: readonly string[], envelopes: readonly string[]): void;
  /**
   * Resolves true when the transport can take the next replay page (the reader took the last one),
   * false when it takes no more pages (a long poll answers one and says `more`).
   */
  nextPage(): Promise<boolean>;
  /** The replay reached `cursor` (`more`: only one page of it was taken); live events follow. */
  ready(cursor: number, channels: readonly string[], more: boolean): void;
  /** A live event, in order and above everything sent before (the session removed duplicates). */
  event(event: LiveEvent): void;
  /** Bytes accepted but not yet handed to the kernel (what a slow reader left behind). */
  queuedBytes(): number;
  /** The periodic keep-alive. */
  heartbeat(): void;
  /** Ends the transport for `ending`; called at most once. */
  end(ending: Ending): void;
  /** The peer went away: release anything waiting on it. */
  gone(): void;
}

/** A reconnect delay around `retryMs` (50 % to 150 %), so clients told together do not come back together. */
export function jitter(retryMs: number): number {
  return Math.round(retryMs * (0.5 + Math.random()));
}
