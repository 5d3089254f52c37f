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

/** An event: `id:` is its cursor (the deployment-wide sequence), `event:` its type, `data:` the envelope. */
export const event = (seq: number, type: string, envelope: string): string => `id: ${seq}\nevent: ${type}\ndata: ${envelope}\n\n`;

/** `event: ready` after a replay: caught up, live from `cursor` (and a `Last-Event-ID` for the browser). */
export const ready = (cursor: number, channels: readonly string[]): string =>
  `id: ${cursor}\nevent: ready\ndata: ${JSON.stringify({ cursor: String(cursor), channels })}\n\n`;

/** `event: reset`: the channel's history cannot cover the cursor; the client reloads its state. */
export const reset = (channel: string): string => `event: reset\ndata: ${JSON.stringify({ channel, reason: 'history_unavailable' })}\n\n`;

/** The heartbeat comment, one Buffer shared by every stream. */
export const HEARTBEAT: Buffer = Buffer.from(comment('hb'));
