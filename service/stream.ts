import type { LiveEvent, Listener } from './hub';

/**
 * Where a stream's bytes go. The session logic does not care whether it is a Node response,
 * a test buffer or something else.
 */
export interface Sink {
  write(chunk: Buffer): void;
  end(): void;
  /** Bytes accepted but not yet handed to the kernel (the backlog of a slow reader). */
  queuedBytes(): number;
  /** Calls `cb` once the backlog has been handed to the kernel: at the next 'drain', or at once when none is pending. */
  onDrain(cb: () => void): void;
}

/** SSE encoding of the protocol's own signals. */
export const sse = {
  retry: (ms: number) => `retry: ${ms}\n\n`,
  comment: (text: string) => `: ${text}\n\n`,
  ready: (cursor: number, channels: readonly string[]) => `id: ${cursor}\nevent: ready\ndata: ${JSON.stringify({ cursor: String(cursor), channels })}\n\n`,
  reset: (channel: string) => `event: reset\ndata: ${JSON.stringify({ channel, reason: 'history_unavailable' })}\n\n`,
  replayed: (seq: number, envelope: string, type: string) => `id: ${seq}\nevent: ${type}\ndata: ${envelope}\n\n`,
};

/** Collects the streams with bytes to write and flushes them together: one socket write per stream per window. */
export interface FlushScheduler {
  mark(stream: SseStream): void;
}

/**
 * One SSE connection. Frames are queued and written in one chunk per flush window, so a burst of
 * events costs one socket write per stream. Until `goLive`, live events are held back (a replay may
 * be running). Every event id comes from one sequence, so `lastSeq` alone removes duplicates
 * between replay and live delivery on every channel of the stream.
 */
export class SseStream implements Listener {
  lastSeq = 0;
  /** Epoch milliseconds after which the stream is recycled (cookie rotation); 0 for never. */
  closeAt = 0;
  closed = false;
  private held: LiveEvent[] | null = [];
  private pending: Buffer[] = [];
  private drainWaiters: (() => void)[] = [];

  constructor(
    readonly sink: Sink,
    readonly channels: readonly string[],
    private readonly scheduler: FlushScheduler,
    /** Called when the sink's backlog passes the cap after a flush. */
    private readonly onBacklog: (stream: SseStream) => void,
    private readonly maxQueuedBytes: number,
    /** Live events held during a replay before `onHeldOverflow` is called. Defaults to unbounded. */
    private readonly maxHeld = Number.POSITIVE_INFINITY,
    /** Called once when more than `maxHeld` live events wait for a replay to finish. */
    private readonly onHeldOverflow: (stream: SseStream) => void = () => undefined,
  ) {}

  onEvent(event: LiveEvent): void {
    if (this.closed) return;
    if (this.held) {
      if (this.held.length >= this.maxHeld) {
        this.held = [];
        this.onHeldOverflow(this);
        return;
      }
      this.held.push(event);
      return;
    }
    if (event.seq <= this.lastSeq || this.closed) return;
    this.lastSeq = event.seq;
    this.enqueue(event.frame);
  }

  /** Holds live events back again (a catch-up replay is about to run). */
  hold(): void {
    this.held ??= [];
  }

  /** Queues what arrived during the replay (after `lastSeq`) and switches to live delivery. */
  goLive(): void {
    const held = this.held ?? [];
    this.held = null;
    for (const e of held) this.onEvent(e);
  }

  /** Queues a protocol chunk (pass a shared Buffer for chunks many streams send, like heartbeats). */
  write(chunk: string | Buffer): void {
    if (!this.closed) this.enqueue(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  }

  private enqueue(chunk: Buffer): void {
    if (this.pending.length === 0) this.scheduler.mark(this);
    this.pending.push(chunk);
  }

  /**
   * Writes what is queued now and resolves once the sink has handed it to the kernel (or the stream
   * closed): a replay writes its next page only when the reader kept up with the last one.
   */
  drained(): Promise<void> {
    this.flush();
    if (this.closed || this.sink.queuedBytes() === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.drainWaiters.push(resolve);
      this.sink.onDrain(() => this.wake());
    });
  }

  /** Marks the stream gone (its socket closed) and releases anything waiting on it. */
  gone(): void {
    this.closed = true;
    this.wake();
  }

  private wake(): void {
    for (const w of this.drainWaiters.splice(0)) w();
  }

  /** Writes everything queued in one chunk. */
  flush(): void {
    if (this.pending.length === 0 || this.closed) return;
    const chunk = this.pending.length === 1 ? this.pending[0] : Buffer.concat(this.pending);
    this.pending.length = 0;
    this.sink.write(chunk);
    if (this.sink.queuedBytes() > this.maxQueuedBytes) this.onBacklog(this);
  }

  /** Flushes, writes `finalChunk` and ends the response. */
  close(finalChunk?: string): void {
    if (this.closed) return;
    if (finalChunk) this.pending.push(Buffer.from(finalChunk));
    const pending = this.pending;
    this.pending = [];
    if (pending.length) this.sink.write(pending.length === 1 ? pending[0] : Buffer.concat(pending));
    this.closed = true;
    this.held = null;
    this.sink.end();
    this.wake();
  }
}
