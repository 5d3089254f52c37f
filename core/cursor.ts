import { CORE_SETTINGS } from '../contract/settings';
import { RealtimeError } from './errors';

/**
 * A connection's cursor over all its channels (docs/DESIGN.md, "Positions per channel"): the SSE `id:` line of every
 * event, `Last-Event-ID`, `lastEventId` and the long poll's `cursor`. One position per channel, in the connection's
 * channel order (sorted, deduplicated): `p1.A.d1.d2…`, where `A` is an anchor at or below every position, in base 36,
 * and each `di` is `position − A` in base 36, empty when 0. {@link encodeCursor} anchors at the lowest position; a
 * transport may keep an anchor for a connection's life, so that an event re-encodes only its own channel's field. A plain decimal (every cursor issued before positions were per channel) is
 * still read: that number on every channel, marked `shared` (see `ChannelCursor.shared`).
 */

const VERSION = 'p1';
/** Base-36 digits of the largest safe integer (2^53 − 1). */
const MAX_FIELD = Number.MAX_SAFE_INTEGER.toString(36).length;
const FIELD = new RegExp(`^[0-9a-z]{0,${MAX_FIELD}}$`);
const LEGACY = /^\d{1,16}$/;

/** Longest connection cursor: the version, `A`, and one field per channel at the most channels a connection may name. */
export const MAX_CURSOR_LENGTH = VERSION.length + 1 + MAX_FIELD + CORE_SETTINGS.maxChannelsPerConnection.max * (1 + MAX_FIELD);

/** A decoded connection cursor: one position per channel, `shared` for a plain decimal. */
export interface ConnectionCursor {
  readonly positions: number[];
  readonly shared: boolean;
}

/** Encodes one position per channel (in the connection's channel order), anchored at `anchor` (at or below each). */
export function encodeCursor(positions: readonly number[], anchor = Math.min(...positions)): string {
  let out = `${VERSION}.${anchor.toString(36)}`;
  for (const p of positions) out += p === anchor ? '.' : `.${(p - anchor).toString(36)}`;
  return out;
}

function invalid(): RealtimeError {
  return new RealtimeError('invalid_cursor', 'A cursor is the `id` of the last event received on this connection (or the `cursor` of the last poll), for the same channels.');
}

/**
 * Decodes a connection cursor for a connection of `channels` channels. Throws `invalid_cursor` for anything else: a
 * malformed value, another number of fields than channels, a position above 2^53.
 */
export function decodeCursor(value: unknown, channels: number): ConnectionCursor {
  if (typeof value !== 'string' || value.length > MAX_CURSOR_LENGTH) throw invalid();
  if (LEGACY.test(value)) {
    const n = Number(value);
    if (!Number.isSafeInteger(n)) throw invalid();
    return { positions: new Array<number>(channels).fill(n), shared: true };
  }
  const parts = value.split('.');
  if (parts[0] !== VERSION || parts.length !== channels + 2 || parts[1] === '' || !parts.every((p, i) => i === 0 || FIELD.test(p))) throw invalid();
  const anchor = parseInt(parts[1], 36);
  if (!Number.isSafeInteger(anchor)) throw invalid();
  const positions = parts.slice(2).map((d) => (d === '' ? anchor : anchor + parseInt(d, 36)));
  if (positions.some((p) => !Number.isSafeInteger(p))) throw invalid();
  return { positions, shared: false };
}
