import { cursorMaxLength, MAX_CURSOR_LENGTH } from '../contract/limits';
import { RealtimeError } from './errors';

/**
 * A connection's cursor over all its channels (docs/DESIGN.md, "Positions per channel"): the SSE `id:` line of every
 * event, `Last-Event-ID`, `lastEventId` and the long poll's `cursor`. One position per channel, in the connection's
 * channel order (sorted, deduplicated): `p1.A.d1.d2…`, where `A` is an anchor at or below every position above 0, in
 * base 36, and each `di` is `position − A` in base 36, empty when 0, or `_` for position 0 (nothing seen on a channel
 * that has no event yet). {@link encodeCursor} anchors at the lowest position above 0; a transport keeps an anchor for
 * a connection (`ConnectionPositions`), so that an event re-encodes only its own channel's field. A plain decimal (every cursor issued before positions were per channel) is
 * still read: that number on every channel, marked `shared` (see `ChannelCursor.shared`).
 */

const VERSION = 'p1';
/** Base-36 digits of the largest safe integer (2^53 − 1). */
const MAX_FIELD = Number.MAX_SAFE_INTEGER.toString(36).length;
const FIELD = new RegExp(`^(?:[0-9a-z]{0,${MAX_FIELD}}|_)$`);
const LEGACY = /^\d{1,16}$/;

/** Longest connection cursor: the version, `A`, and one field per channel at the most channels a connection may name. */
export { MAX_CURSOR_LENGTH };

/** A decoded connection cursor: one position per channel, `shared` for a plain decimal. */
export interface ConnectionCursor {
  readonly positions: number[];
  readonly shared: boolean;
}

/** One channel's field: its offset from the anchor in base 36, empty when 0, `_` for position 0 above anchor 0. */
const field = (position: number, anchor: number): string => (position === anchor ? '' : position === 0 ? '_' : (position - anchor).toString(36));

/** The lowest position above 0, else 0. */
function lowest(positions: readonly number[]): number {
  let a = 0;
  for (const p of positions) if (p > 0 && (a === 0 || p < a)) a = p;
  return a;
}

/** Encodes one position per channel (in the connection's channel order), anchored at `anchor` (at or below each above 0). */
export function encodeCursor(positions: readonly number[], anchor = lowest(positions)): string {
  let out = `${VERSION}.${anchor.toString(36)}`;
  for (const p of positions) out += `.${field(p, anchor)}`;
  return out;
}

/**
 * A connection's positions with its cursor kept encoded: the anchor is its lowest position above 0, so an event
 * re-encodes only its own channel's field, and the cursor string is rebuilt only when asked for after a change. A
 * position below the anchor (a channel's first event, older than the others' positions) moves the anchor and
 * re-encodes every field, once.
 */
export class ConnectionPositions {
  private readonly order = new Map<string, number>();
  private readonly fields: string[];
  private readonly at: number[];
  private head = '';
  private anchor = 0;
  private encoded: string | undefined;

  /** `channels` in the connection's channel order (sorted, deduplicated), with their positions. */
  constructor(channels: readonly string[], positions: readonly number[]) {
    channels.forEach((c, i) => this.order.set(c, i));
    this.at = [...positions];
    this.fields = [];
    this.anchorAt(lowest(positions));
  }

  private anchorAt(anchor: number): void {
    this.anchor = anchor;
    this.head = `${VERSION}.${anchor.toString(36)}`;
    for (let i = 0; i < this.at.length; i++) this.fields[i] = field(this.at[i], anchor);
    this.encoded = undefined;
  }

  /**
   * Moves `channel` up to `position` (a lower one is ignored); false when it is not a channel of the connection. A
   * connection of one channel is anchored at its position, so its cursor is {@link encodeCursor}'s of that position:
   * the same for every such connection after an event (the SSE transport shares that event's bytes among them).
   */
  set(channel: string, position: number): boolean {
    const i = this.order.get(channel);
    if (i === undefined) return false;
    if (position <= this.at[i]) return true;
    this.at[i] = position;
    if (this.anchor === 0 || position < this.anchor || this.at.length === 1) {
      this.anchorAt(position);
      return true;
    }
    this.fields[i] = field(position, this.anchor);
    this.encoded = undefined;
    return true;
  }

  /** The position of `channel`, undefined for another channel. */
  get(channel: string): number | undefined {
    const i = this.order.get(channel);
    return i === undefined ? undefined : this.at[i];
  }

  /** The cursor over every channel (see {@link decodeCursor}). */
  get cursor(): string {
    this.encoded ??= `${this.head}.${this.fields.join('.')}`;
    return this.encoded;
  }
}

function invalid(): RealtimeError {
  return new RealtimeError('invalid_cursor', 'A cursor is the `id` of the last event received on this connection (or the `cursor` of the last poll), for the same channels.');
}

/**
 * Decodes a connection cursor for a connection of `channels` channels. Throws `invalid_cursor` for anything else: a
 * malformed value, another number of fields than channels, a position above 2^53.
 */
export function decodeCursor(value: unknown, channels: number): ConnectionCursor {
  if (typeof value !== 'string' || value.length > cursorMaxLength(channels)) throw invalid();
  if (LEGACY.test(value)) {
    const n = Number(value);
    if (!Number.isSafeInteger(n)) throw invalid();
    return { positions: new Array<number>(channels).fill(n), shared: true };
  }
  const parts = value.split('.');
  if (parts[0] !== VERSION || parts.length !== channels + 2 || parts[1] === '' || !parts.every((p, i) => i === 0 || FIELD.test(p))) throw invalid();
  const anchor = parseInt(parts[1], 36);
  if (!Number.isSafeInteger(anchor)) throw invalid();
  const positions = parts.slice(2).map((d) => (d === '' ? anchor : d === '_' ? 0 : anchor + parseInt(d, 36)));
  if (positions.some((p) => !Number.isSafeInteger(p))) throw invalid();
  return { positions, shared: false };
}
