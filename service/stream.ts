import type { LiveEvent, Listener } from './hub';

/**
 * Where a stream's bytes go. The session logic does not care whether it is a Node response,
 * a test buffer or something else.
 */
export interface Sink {
  write(chunk: Buffer | string): void;
  end(): void;
}

/** SSE encoding of the protocol's own signals. */
export const sse = {
  retry: (ms: number) => `retry: ${ms}\n\n`,
  comment: (text: string) => `: ${text}\n\n`,
  ready: (cursor: number, channels: readonly string[]) => `id: ${cursor}\nevent: ready\ndata: ${JSON.stringify({ cursor: String(cursor), channels })}\n\n`,
  reset: (channel: string) => `event: reset\ndata: ${JSON.stringify({ channel, reason: 'history_unavailable' })}\n\n`,
  replayed: (seq: number, envelope: string, type: string) => `id: ${seq}\nevent: ${type}\ndata: ${envelope}\n\n`,
};

/**
 * One SSE connection. Until `goLive`, live events are held back (a replay may be running); after it,
 * events are written at once. Every event's id comes from one sequence, so `lastSeq` alone removes
 * duplicates between replay and live delivery on every channel of the stream.
 */
export class SseStream implements Listener {
  lastSeq = 0;
  /** Epoch milliseconds after which the stream is recycled (cookie rotation); 0 for never. */
  closeAt = 0;
  private held: LiveEvent[] | null = [];
  closed = false;

  constructor(
    readonly sink: Sink,
    readonly channels: readonly string[],
  ) {}

  onEvent(event: LiveEvent): void {
    if (this.held) {
      this.held.push(event);
      return;
    }
    if (event.seq <= this.lastSeq || this.closed) return;
    this.lastSeq = event.seq;
    this.sink.write(event.frame);
  }

  /** Holds live events back again (a catch-up replay is about to run). */
  hold(): void {
    this.held ??= [];
  }

  /** Writes what arrived during the replay (after `lastSeq`) and switches to live delivery. */
  goLive(): void {
    const held = this.held ?? [];
    this.held = null;
    for (const e of held) this.onEvent(e);
  }

  write(chunk: string): void {
    if (!this.closed) this.sink.write(chunk);
  }

  close(finalChunk?: string): void {
    if (this.closed) return;
    if (finalChunk) this.sink.write(finalChunk);
    this.closed = true;
    this.sink.end();
  }
}
