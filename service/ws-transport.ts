import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import { frames } from '../core/ws-protocol';
import type { FlushWindow } from './flush-window';
import type { LiveEvent } from './hub';
import { QueuedTransport, SocketSink, type EndReason, type Ending, type Transport } from './transport';

/** Close codes the tasks use (RFC 6455 §7.4.1). */
export const WS_CLOSE = {
  /** Draining or shutting down: reconnect (the reason carries `retryMs`) and resubscribe with `since`. */
  goingAway: 1001,
  /** The user's sessions were revoked: get a new ticket. */
  revoked: 1008,
  /** The reader fell behind (MAX_QUEUED_BYTES, MAX_HELD_EVENTS) or missed pings: reconnect and resubscribe with `since`. */
  tryAgainLater: 1013,
  /** The Redis subscriber reconnected: events may have been missed; reconnect and resubscribe with `since`. */
  restart: 1012,
  /** Setting the socket up failed: retry later. */
  internalError: 1011,
} as const;

/** A close reason the client can read: why, and when to come back (jittered by the engine). */
export function closeReason(reason: string, retryMs?: number): string {
  return JSON.stringify(retryMs === undefined ? { reason } : { reason, retryMs });
}

/** How each ending closes a socket: the code, and the reason word the client reads. */
const CLOSES: Record<EndReason, readonly [code: number, reason: string]> = {
  drain: [WS_CLOSE.goingAway, 'draining'],
  shutdown: [WS_CLOSE.goingAway, 'shutdown'],
  recycle: [WS_CLOSE.goingAway, 'recycle'],
  resync: [WS_CLOSE.restart, 'resubscribe'],
  revoked: [WS_CLOSE.revoked, 'revoked'],
  'held-overflow': [WS_CLOSE.tryAgainLater, 'held-overflow'],
  slow: [WS_CLOSE.tryAgainLater, 'slow'],
  failed: [WS_CLOSE.internalError, 'failed'],
};

/**
 * The unmasked text frame (RFC 6455 §5.2, FIN set, no compression) of `payload`, as a server sends
 * it. A live event's frame is built once and written as is to every socket that delivers it.
 */
export function textFrame(payload: Buffer): Buffer {
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x81, n]) : n < 65_536 ? Buffer.from([0x81, 126, n >> 8, n & 0xff]) : Buffer.alloc(10);
  if (n >= 65_536) {
    head[0] = 0x81;
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  return Buffer.concat([head, payload]);
}

/** The WebSocket frame of a live event (one per event, shared by every socket through {@link LiveEvent.encoded}). */
export const wsEventFrame = (e: LiveEvent): Buffer => textFrame(Buffer.from(e.envelope));

const HEARTBEAT_FRAME = textFrame(Buffer.from(frames.heartbeat()));

/**
 * A `/live` WebSocket as a transport (the API Gateway protocol's frames, core/ws-protocol.ts): replay
 * pages as `reset` frames and envelopes, live events as their shared frame, `subscribed` when a
 * subscription goes live, a WebSocket ping and a `{"type":"heartbeat"}` frame as the keep-alive
 * (browsers do not show pings to scripts, and the client SDK takes a quiet socket that still hears
 * these as alive), and a close code with a JSON reason (`{"reason","retryMs"?}`) at the end. Nothing
 * is written before the upgrade's 101 ({@link attach}); the ticket's channels go live before it, as
 * API Gateway's `$connect` runs before its own, with nothing to say (the open socket says it).
 */
export class WsTransport extends QueuedTransport implements Transport {
  readonly unidirectional = false;
  /** False once a heartbeat ping went out and no pong came back yet. */
  private alive = true;
  private ws?: WebSocket;

  constructor(
    /** The connection being upgraded. */
    private readonly socket: Duplex,
    window: FlushWindow,
    /** Bytes the socket may hold for a slow reader after a flush before its owner is told it is slow (MAX_QUEUED_BYTES). */
    maxQueuedBytes: number,
  ) {
    super(new SocketSink(socket), window, maxQueuedBytes);
  }

  /** The upgrade completed: what was queued since (live events above the floor) is written after the 101. */
  attach(ws: WebSocket): void {
    this.ws = ws;
    ws.on('pong', () => (this.alive = true));
    this.schedule();
  }

  page(resets: readonly string[], envelopes: readonly string[]): void {
    for (const ch of resets) this.reply(frames.reset(ch));
    for (const env of envelopes) this.reply(env);
  }

  ready(): void {
    // The ticket's channels went live before the 101: the open socket says so.
  }

  subscribed(channel: string, floor: number): void {
    this.reply(frames.subscribed(channel, floor));
  }

  /** `{"type":"presence","channel","members","position"}`. */
  presence(json: string): void {
    this.reply(frames.presence(json));
  }

  event(event: LiveEvent): void {
    this.enqueue(event.encoded(wsEventFrame));
  }

  /** Queues a frame of the protocol (an envelope, or a signal: `pong`, `published`, `error`, ...). */
  reply(text: string): void {
    this.enqueue(textFrame(Buffer.from(text)));
  }

  /** A ping and a heartbeat frame; a socket that did not answer the last ping is terminated. */
  heartbeat(): void {
    const ws = this.ws;
    if (!ws) return;
    if (!this.alive) return void ws.terminate();
    this.alive = false;
    ws.ping();
    this.enqueue(HEARTBEAT_FRAME);
  }

  protected writable(): boolean {
    return this.ws !== undefined;
  }

  protected lastWords(): undefined {
    // The close frame says why (finish).
    return undefined;
  }

  /** A close frame after what is queued; before the 101, the connection is dropped. At shutdown the socket is freed at once. */
  protected finish(ending: Ending): void {
    const ws = this.ws;
    if (!ws) return void this.socket.destroy();
    const [code, reason] = CLOSES[ending.reason];
    ws.close(code, closeReason(reason, ending.retryMs));
    if (ending.reason === 'shutdown') ws.terminate();
  }
}
