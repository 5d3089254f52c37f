import type { ServerResponse } from 'node:http';
import { CORE_SETTINGS } from '../contract/settings';
import { RealtimeError } from '../core/errors';
import { REPLAY_FRAME_BYTES } from '../core/broker';
import type { LiveEvent } from './hub';
import type { Ending, Transport, TransportOwner } from './transport';

/**
 * The long-poll answer: `{"events":[…],"cursor":"…","resets":[…],"more"?:true,"presence"?:[…]}` (envelopes and
 * presence snapshots are already JSON). `presence` only when the poll asked for it (`presence=1`).
 */
export function encodePollAnswer(envelopes: readonly string[], cursor: string, resets: readonly string[], more: boolean, presence?: readonly string[]): string {
  return `{"events":[${envelopes.join(',')}],"cursor":${JSON.stringify(cursor)},"resets":${JSON.stringify(resets)}${more ? ',"more":true' : ''}${presence ? `,"presence":[${presence.join(',')}]` : ''}}`;
}

/**
 * A long poll (`GET /poll`) as a transport: one JSON answer per request. It answers at once when the
 * replay page found anything (events or resets); otherwise it waits for the first live events (those
 * published in the same burst join the answer, at most `maxEvents`, then `"more": true`) or for
 * `timeoutMs`, and answers with what it has. A drain or shutdown answers at once; a revocation
 * answers 401. `answered` settles when the answer was written or the client left; it rejects with
 * the error to answer instead (401 on revocation).
 *
 * A poll that asked for presence (`presence=1`) gets the snapshots of its channels that keep presence
 * (`{channel, members|count, position}`), read once the answer's events are fixed: each position is at or above every
 * event of the answer, and the client applies the `presence.*` events above it (docs/DESIGN.md, "Presence").
 */
export class PollTransport implements Transport {
  readonly unidirectional = true;
  closed = false;
  owner?: TransportOwner;
  readonly answered: Promise<void>;
  private resolve!: () => void;
  private reject!: (err: RealtimeError) => void;
  private readonly envelopes: string[] = [];
  private readonly resets: string[] = [];
  /** The connection's cursor over its channels (`core/cursor.ts`) after what the answer holds. */
  private cursor = '';
  private more = false;
  private liveBytes = 0;
  /** The replay is done: live events are collected. */
  private live = false;
  /** A drain or shutdown asked for the answer before the replay was done. */
  private hurry = false;
  private timer?: NodeJS.Timeout;
  private soon?: NodeJS.Immediate;

  constructor(
    private readonly res: ServerResponse,
    /** Headers of the 200 answer (CORS, reconnect cookie). */
    private readonly headers: Record<string, string | string[]>,
    /** Most events in one answer (REPLAY_MAX_EVENTS). */
    private readonly maxEvents: number,
    /** Longest wait for a live event, in milliseconds (POLL_TIMEOUT_MS). */
    private readonly timeoutMs: number,
    /** Most bytes of live events in one answer (REPLAY_MAX_BYTES). Defaults to 1 MiB. */
    private readonly maxBytes: number = CORE_SETTINGS.replayMaxBytes.default,
    /** Reads the presence snapshots to answer with (`presence=1`); none: the answer has no `presence`. */
    private readonly snapshots?: () => Promise<string[]>,
  ) {
    this.answered = new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    // Rejections are read by whoever awaits `answered`; never reported as unhandled meanwhile.
    this.answered.catch(() => undefined);
  }

  page(resets: readonly string[], envelopes: readonly string[]): void {
    this.resets.push(...resets);
    this.envelopes.push(...envelopes);
  }

  /** One page per answer: the cursor and `"more": true` tell the client to poll again at once. */
  nextPage(): Promise<boolean> {
    return Promise.resolve(false);
  }

  ready(cursor: string, _channels: readonly string[], more: boolean): void {
    this.cursor = cursor;
    this.more = more;
    if (this.envelopes.length || this.resets.length || this.hurry) return this.answer();
    this.live = true;
    this.timer = setTimeout(() => this.answer(), this.timeoutMs);
  }

  event(event: LiveEvent, cursor = ''): void {
    if (this.closed || !this.live) return;
    const size = Buffer.byteLength(event.envelope) + REPLAY_FRAME_BYTES;
    // The same budget as a replay page: events and bytes (the first event always fits).
    if (this.envelopes.length >= this.maxEvents || (this.envelopes.length > 0 && this.liveBytes + size > this.maxBytes)) {
      this.more = true;
      return;
    }
    this.liveBytes += size;
    this.envelopes.push(event.envelope);
    this.cursor = cursor;
    // Let events published in the same burst join this answer.
    this.soon ??= setImmediate(() => this.answer());
  }

  queuedBytes(): number {
    return 0;
  }

  heartbeat(): void {
    // A poll answers well within the ALB idle timeout: nothing to keep alive.
  }

  end(ending: Ending): void {
    if (this.closed) return;
    if (ending.reason === 'revoked') {
      this.settle();
      this.reject(new RealtimeError('unauthorized', "This user's sessions were revoked; get a new ticket from POST /tickets."));
      return;
    }
    // Drain, shutdown: answer with what arrived (after the replay, if it is still running).
    if (this.live) this.answer();
    else this.hurry = true;
  }

  gone(): void {
    if (this.closed) return;
    this.settle();
    this.resolve();
  }

  private answer(): void {
    if (this.closed) return;
    this.settle();
    if (!this.snapshots) return this.write();
    // Read after the events were fixed (settle): a snapshot failure answers without `presence` (the client asks again).
    this.snapshots().then(
      (p) => this.write(p),
      () => this.write(),
    );
  }

  private write(presence?: readonly string[]): void {
    const res = this.res;
    if (!res.writableEnded && !res.destroyed) {
      res.writeHead(200, this.headers);
      res.end(encodePollAnswer(this.envelopes, this.cursor, this.resets, this.more, presence));
    }
    this.resolve();
  }

  private settle(): void {
    this.closed = true;
    this.live = false;
    clearTimeout(this.timer);
    if (this.soon) clearImmediate(this.soon);
  }
}
