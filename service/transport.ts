import type { Duplex } from 'node:stream';
import type { FlushWindow, Flushable } from './flush-window';
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
  /**
   * The Redis subscriber reconnected: live events published meanwhile never arrived. Streams catch up
   * by replay; a waiting long poll answers now, so its client polls again from its cursor and the
   * replay brings them.
   */
  | 'resync'
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

/** The connection's cursor around a replay page (`Transport.page`): before its resets, and after each of its events. */
export interface PageIds {
  readonly resets: string;
  readonly events: readonly string[];
}

/** What a transport reports back to its session. */
export interface TransportOwner {
  /** The peer stopped reading: its backlog passed the transport's cap. */
  slow(): void;
}

/**
 * The seam between a session (what to deliver, service/session.ts) and the wire (how to encode and
 * write it). A session hands its transport, in this order: replay pages, then `ready`, then live
 * events and heartbeats, and finally `end`; or the peer goes away (`gone`). A bidirectional
 * transport's client may also subscribe later: each new subscription's replay pages, then
 * `subscribed`, then its live events. Implementations: the SSE stream (service/sse-transport.ts),
 * the long poll (service/poll-transport.ts) and the `/live` WebSocket (service/ws-transport.ts).
 * (Model: centrifuge `transport.go`, one interface for WebSocket, SSE and HTTP streaming.)
 */
export interface Transport {
  /**
   * True when the client cannot send frames (SSE, long poll): the session's channels are the ones it
   * was opened with. False for the WebSocket, whose client subscribes and unsubscribes.
   */
  readonly unidirectional: boolean;
  /** True once the transport ended or its peer went away: nothing more is written. */
  readonly closed: boolean;
  /** Set by the session that drives it; told when the peer stopped reading and its backlog passed the cap. */
  owner?: TransportOwner;
  /**
   * One page of a replay: channels whose history cannot cover the cursor, then the envelopes after it, oldest first.
   * `ids` (unidirectional sessions): the connection's cursor before the resets and after each envelope.
   */
  page(resets: readonly string[], envelopes: readonly string[], ids?: PageIds): void;
  /**
   * Resolves true when the transport can take the next replay page (the reader took the last one),
   * false when it takes no more pages (a long poll answers one and says `more`, or the transport closed).
   */
  nextPage(): Promise<boolean>;
  /**
   * The replay reached `cursor` (`more`: only one page of it was taken); live events follow. `cursor` is the
   * connection's cursor over its channels (`core/cursor.ts`; empty for a WebSocket, whose subscriptions have floors).
   */
  ready(cursor: string, channels: readonly string[], more: boolean): void;
  /** A subscription the client asked for (bidirectional transports) is live above `floor`; its replay pages came before. */
  subscribed?(channel: string, floor: number): void;
  /** A channel's presence snapshot (`presenceJson`: `{channel, members, position}`); transports without it skip it. */
  presence?(json: string): void;
  /**
   * A live event, in order and above everything sent before on its channel (the session removed duplicates), with the
   * connection's cursor after it (unidirectional sessions).
   */
  event(event: LiveEvent, cursor?: string): void;
  /** Bytes accepted but not yet handed to the kernel (what a slow reader left behind). */
  queuedBytes(): number;
  /** The periodic keep-alive. */
  heartbeat(): void;
  /** Ends the transport for `ending`; called at most once. */
  end(ending: Ending): void;
  /** The peer went away: release anything waiting on it. */
  gone(): void;
}

/**
 * Where a stream's bytes go: a Node response, its bare socket, a WebSocket's socket, or a test
 * buffer. The transport does not care which (model: better-sse `src/adapters/Connection.ts`).
 */
export interface Sink {
  write(chunk: Buffer): void;
  end(): void;
  /** Frees the connection at once, whatever the peer does. */
  destroy(): void;
  /** Bytes accepted but not yet handed to the kernel (the backlog of a slow reader). */
  queuedBytes(): number;
  /** Calls `cb` once the backlog has been handed to the kernel: at the next 'drain', or at once when none is pending. */
  onDrain(cb: () => void): void;
  /** True when the stream took its socket over from node:http (service/sse-transport.ts `takeOver`). */
  readonly takenOver?: boolean;
}

/**
 * Frames straight to a socket: a close-delimited SSE body (`head`, when given, is the response head,
 * sent with the first write) or a WebSocket's frames (built by service/ws-transport.ts).
 */
export class SocketSink implements Sink {
  readonly takenOver: boolean;
  constructor(
    private readonly socket: Duplex,
    /** The HTTP head (latin1: node:http's header bytes), sent with the first write. */
    private head?: string,
  ) {
    this.takenOver = head !== undefined;
  }
  write(chunk: Buffer): void {
    const head = this.head;
    if (head !== undefined) {
      this.head = undefined;
      const joined = Buffer.allocUnsafe(head.length + chunk.length);
      joined.write(head, 0, 'latin1');
      chunk.copy(joined, head.length);
      chunk = joined;
    }
    this.socket.write(chunk);
  }
  end(): void {
    if (this.head !== undefined) this.write(Buffer.alloc(0));
    this.socket.end();
  }
  destroy(): void {
    this.socket.destroy();
  }
  queuedBytes(): number {
    return this.socket.writableLength;
  }
  onDrain(cb: () => void): void {
    if (this.socket.writableNeedDrain) this.socket.once('drain', cb);
    else cb();
  }
}

/**
 * What the long-lived transports (an SSE stream, a WebSocket) share: frames are queued and written
 * to the sink in one chunk per flush window (service/flush-window.ts), so a burst of events costs one
 * socket write per connection; a reader whose backlog passes `maxQueuedBytes` after a flush is
 * reported slow; a replay's next page waits until the sink handed the last one to the kernel. A
 * subclass encodes (pages, events, heartbeats) and says how the connection ends ({@link finish}).
 */
export abstract class QueuedTransport implements Flushable {
  closed = false;
  owner?: TransportOwner;
  /**
   * What is queued, {@link queued} chunks: the first two in fields of the transport itself, any more in `more`. A window
   * at 20 msg/s holds one or two frames; with them in fields, queueing and flushing touch the transport object and no
   * array of its own (an array and its backing store are two more objects, out of cache, per stream per window: at
   * 8k streams the queue's array reads and writes were 2 % of the process's CPU time in `perf`).
   */
  private q0: Buffer = EMPTY;
  private q1: Buffer = EMPTY;
  private more: Buffer[] | undefined = undefined;
  private queued = 0;
  /** True while the queue holds only a {@link prelude}: the window is not marked yet. */
  private unmarked = false;
  private drainWaiters: (() => void)[] = [];

  constructor(
    readonly sink: Sink,
    private readonly window: FlushWindow,
    /** Bytes the sink may hold for a slow reader after a flush before its owner is told it is slow (MAX_QUEUED_BYTES). */
    private readonly maxQueuedBytes: number,
  ) {}

  /**
   * Writes what is queued now and resolves once the sink has handed it to the kernel (or the
   * transport closed): a replay writes its next page only when the reader kept up with the last one.
   */
  async nextPage(): Promise<boolean> {
    this.flush();
    if (!this.closed && this.sink.queuedBytes() > 0) {
      await new Promise<void>((resolve) => {
        this.drainWaiters.push(resolve);
        this.sink.onDrain(() => this.wake());
      });
    }
    return !this.closed;
  }

  /** Bytes waiting for the reader. */
  queuedBytes(): number {
    return this.sink.queuedBytes();
  }

  /** Writes everything queued in one chunk; returns how many queued chunks that was (the window's frames per write). */
  flush(): number {
    const n = this.queued;
    if (n === 0 || this.closed || !this.writable()) return 0;
    this.sink.write(this.take());
    if (this.sink.queuedBytes() > this.maxQueuedBytes) this.owner?.slow();
    return n;
  }

  /** Everything queued, in one chunk, and the queue emptied. */
  private take(): Buffer {
    const n = this.queued;
    const chunk = n === 1 ? this.q0 : n === 2 ? joinTwo(this.q0, this.q1) : joinShared(this.q0, this.q1, this.more!);
    this.q0 = this.q1 = EMPTY;
    this.more = undefined;
    this.queued = 0;
    return chunk;
  }

  /** Queues `chunk` after what is queued (no window marked). */
  private push(chunk: Buffer): void {
    const n = this.queued++;
    if (n === 0) this.q0 = chunk;
    else if (n === 1) this.q1 = chunk;
    else (this.more ??= []).push(chunk);
  }

  /** Drops what is queued. */
  private clear(): void {
    this.q0 = this.q1 = EMPTY;
    this.more = undefined;
    this.queued = 0;
  }

  /**
   * Writes what is queued and `last` (why it ends, in the transport's encoding), then ends the
   * connection ({@link finish}). A slow reader's connection is freed a second later, whatever it does.
   */
  end(ending: Ending): void {
    if (this.closed) return;
    const last = this.lastWords(ending);
    if (last?.length) this.push(typeof last === 'string' ? Buffer.from(last) : last);
    if (this.queued && this.writable()) this.sink.write(this.take());
    this.clear();
    this.closed = true;
    this.finish(ending);
    this.wake();
    if (ending.reason === 'slow') setTimeout(() => this.sink.destroy(), 1000).unref();
  }

  gone(): void {
    this.closed = true;
    this.clear();
    this.wake();
  }

  /** What is written last when the transport ends for `ending` (none: nothing). */
  protected abstract lastWords(ending: Ending): string | Buffer | undefined;

  /** Ends the connection, after the last words were written. */
  protected abstract finish(ending: Ending): void;

  /** False while nothing may be written yet (a WebSocket before its 101): the queue waits. */
  protected writable(): boolean {
    return true;
  }

  /** Queues a chunk (pass a shared Buffer for chunks many connections send, like heartbeats). */
  protected write(chunk: string | Buffer): void {
    if (!this.closed && chunk.length) this.enqueue(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  }

  protected enqueue(chunk: Buffer): void {
    if (this.closed) return;
    if (this.queued === 0 || this.unmarked) {
      this.unmarked = false;
      this.window.mark(this);
    }
    this.push(chunk);
  }

  /**
   * Queues `chunk` (the first thing the connection sends) without marking the window: it goes out with whatever is
   * written next (an SSE stream's `retry:` hint, and the response head with it, in one write with the first page or
   * `ready`, a round trip later, instead of a write of its own).
   */
  protected prelude(chunk: Buffer): void {
    if (this.closed || this.queued) return this.enqueue(chunk);
    this.push(chunk);
    this.unmarked = true;
  }

  /** Marks the queue for the next window (it waited for {@link writable}). */
  protected schedule(): void {
    if (this.queued) this.window.mark(this);
  }

  private wake(): void {
    for (const w of this.drainWaiters.splice(0)) w();
  }
}

const EMPTY = Buffer.alloc(0);

/** The two chunks {@link joinTwo} joined last, and their join. */
let lastA: Buffer = EMPTY;
let lastB: Buffer = EMPTY;
let lastTwo: Buffer = EMPTY;

/**
 * `Buffer.concat([a, b])`, shared with the last call when it joined the same two Buffers (the same objects, in the same
 * order). A window flushes its streams one after another, and the streams of one channel queue the same shared frames
 * (an event's bytes, the heartbeat): they then write one buffer, as they would an event alone, instead of a copy each
 * (at 8k streams of one channel, a copy and its garbage per socket write). A stream with bytes of its own (a cursor over
 * several channels, the response head) misses, and pays the copy as before. Written buffers are never changed
 * afterwards, so the same objects hold the same bytes. Two chunks is a window's usual lot at 20 msg/s; {@link joinShared}
 * does the same for more.
 */
function joinTwo(a: Buffer, b: Buffer): Buffer {
  if (a === lastA && b === lastB) return lastTwo;
  const out = Buffer.allocUnsafe(a.length + b.length);
  a.copy(out, 0);
  b.copy(out, a.length);
  lastA = a;
  lastB = b;
  lastTwo = out;
  return out;
}

/** The chunks {@link joinShared} joined last, and their join. */
let lastParts: Buffer[] = [];
let lastJoined: Buffer = EMPTY;

/** {@link joinTwo} for three chunks or more (`a`, `b`, then `more`), shared with the last call of the same chunks. */
function joinShared(a: Buffer, b: Buffer, more: Buffer[]): Buffer {
  const n = more.length + 2;
  if (n === lastParts.length && a === lastParts[0] && b === lastParts[1]) {
    let i = 2;
    while (i < n && more[i - 2] === lastParts[i]) i++;
    if (i === n) return lastJoined;
  }
  lastParts = [a, b, ...more];
  lastJoined = Buffer.concat(lastParts);
  return lastJoined;
}

/** A reconnect delay around `retryMs` (50 % to 150 %), so clients told together do not come back together. */
export function jitter(retryMs: number): number {
  return Math.round(retryMs * (0.5 + Math.random()));
}
