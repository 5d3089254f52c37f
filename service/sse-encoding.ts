/**
 * The SSE wire format, in one place: every frame the service writes on `text/event-stream`, live or
 * replayed, is encoded here (https://html.spec.whatwg.org/multipage/server-sent-events.html).
 *
 * Envelopes are JSON, so they never hold a raw line break and go on one `data:` line as they are.
 * Event types and channel names come from grammars without line breaks (core/events.ts, core/channels.ts).
 */

/** `retry:` tells the EventSource how long to wait before it reconnects, in milliseconds. */
export const retry = (ms: number): string => `retry: ${ms}\n\n`;

/** A comment line: ignored by EventSource, used for heartbeats and for why a stream ends. */
export const comment = (text: string): string => `: ${text}\n\n`;

/**
 * An event's `id:` line: the connection's cursor over all its channels after the event (`core/cursor.ts`), what a
 * native `EventSource` sends back as `Last-Event-ID`. Per connection, so it is written before the event's frame,
 * which is shared: every event carries it (the `eventsource` package ignores a block with an `id:` and no `data:`).
 */
export const id = (cursor: string): string => `id: ${cursor}\n`;

/**
 * `id: <cursor>\n` and then `frame` (an encoded {@link frame}), in one buffer: one allocation and one copy of the shared
 * frame per connection. A cursor is ASCII (`core/cursor.ts`).
 */
export function withId(cursor: string, frame: Buffer): Buffer {
  const head = 4 + cursor.length + 1;
  const out = Buffer.allocUnsafe(head + frame.length);
  out.write('id: ', 0, 'latin1');
  out.write(cursor, 4, 'latin1');
  out[head - 1] = 0x0a;
  frame.copy(out, head);
  return out;
}

/** An event's frame after its `id:` line: `event:` its type, `data:` the envelope. Encoded once per event. */
export const frame = (type: string, envelope: string): string => `event: ${type}\ndata: ${envelope}\n\n`;

/** A whole event: its `id:` line and its frame. */
export const event = (cursor: string, type: string, envelope: string): string => id(cursor) + frame(type, envelope);

/** `event: ready` after a replay: caught up, live from `cursor` (and a `Last-Event-ID` for the browser). */
export const ready = (cursor: string, channels: readonly string[]): string =>
  `${id(cursor)}event: ready\ndata: ${JSON.stringify({ cursor, channels })}\n\n`;

/**
 * `event: reset`: the channel's history cannot cover the cursor; the client reloads its state. With the connection's
 * cursor (`id:`), so a browser that reconnects after it resumes from there.
 */
export const reset = (channel: string, cursor?: string): string =>
  `${cursor === undefined ? '' : id(cursor)}event: reset\ndata: ${JSON.stringify({ channel, reason: 'history_unavailable' })}\n\n`;

/** The heartbeat comment, one Buffer shared by every stream. */
export const HEARTBEAT: Buffer = Buffer.from(comment('hb'));
