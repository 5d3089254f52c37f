import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { envelopeType } from '../core/events';
import type { FlushWindow } from './flush-window';
import type { LiveEvent } from './hub';
import * as sse from './sse-encoding';
import { QueuedTransport, SocketSink, type EndReason, type Ending, type PageIds, type Sink, type Transport } from './transport';

export type { Sink } from './transport';

/**
 * Opens the stream's response with `headers` and returns its sink. With `framing` `close` on
 * HTTP/1.1, the body is close-delimited (RFC 9112 §6.3): no chunk header and trailer around every
 * write, a stream's connection is never reused, so the stream takes its socket over from node:http
 * ({@link takeOver}): the head goes out with the first frames in one write, and the request, the
 * response and the HTTP parser are let go (an idle stream then holds its socket, its session and
 * little else). Otherwise Node's default (chunked on HTTP/1.1) through the response.
 */
export function openSink(req: IncomingMessage, res: ServerResponse, headers: Record<string, string | string[]>, framing: 'close' | 'chunked'): Sink {
  const socket = req.socket;
  socket.setNoDelay(true);
  if (framing === 'close' && req.httpVersion === '1.1') {
    // The head, as node:http would write it (streamHead), is sent by the sink with the first frames.
    const head = res.sendDate ? streamHead(headers) : undefined;
    if (head !== undefined && takeOver(req, res, socket)) {
      // The response reads as answered (`headersSent`, `statusCode`) to whoever holds it, as after writeHead.
      (res as { _header?: unknown })._header = head;
      return new SocketSink(socket, head);
    }
    // A header value node:http would refuse, or internals takeOver does not know: Node builds, checks and writes the head.
    res.useChunkedEncodingByDefault = false;
    res.writeHead(200, { ...headers, connection: 'close' });
    const built = (res as { _header?: unknown })._header;
    if (typeof built === 'string' && takeOver(req, res, socket)) return new SocketSink(socket, built);
    res.flushHeaders();
    return new SocketSink(socket);
  }
  res.writeHead(200, headers);
  return new ResponseSink(res, socket);
}

/** What node:http refuses in a header value (lib/_http_common.js `checkInvalidHeaderChar`). */
const INVALID_HEADER_CHAR = /[^\t\x20-\x7e\x80-\xff]/;
/** node:http's `Date` header value, read once a second (as node:http caches it). */
let dateSecond = -1;
let dateValue = '';

/**
 * The `200` head of a close-delimited stream with `headers` (lower-case names, ours), byte for byte what node:http's
 * `writeHead(200, { ...headers, connection: 'close' })` writes with `useChunkedEncodingByDefault` off: the header lines
 * in order (an array as one line per value), `connection: close`, then `Date`. Built here because node:http's own
 * building (the spread, `_storeHeader`'s checks, the latin1 copy) was a tenth of a connect's JavaScript in the storm's
 * profile; test/runtime/stream-socket.test.ts compares the two. Undefined when a value holds a character node:http would
 * refuse (it then builds the head and throws as before).
 */
export function streamHead(headers: Record<string, string | string[]>): string | undefined {
  let out = 'HTTP/1.1 200 OK\r\n';
  for (const name in headers) {
    const v = headers[name];
    if (typeof v === 'string') {
      if (INVALID_HEADER_CHAR.test(v)) return undefined;
      out += `${name}: ${v}\r\n`;
    } else {
      for (const one of v) {
        if (INVALID_HEADER_CHAR.test(one)) return undefined;
        out += `${name}: ${one}\r\n`;
      }
    }
  }
  const second = Math.floor(Date.now() / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateValue = new Date(second * 1000).toUTCString();
  }
  return `${out}connection: close\r\nDate: ${dateValue}\r\n\r\n`;
}

/** node:http's per-connection internals that {@link takeOver} reads (undocumented; checked before use). */
interface HttpSocket extends Socket {
  parser?: { _consumed?: boolean; unconsume(): void; finish(): unknown } | null;
  _httpMessage?: ServerResponse | null;
}

/**
 * The listeners node:http puts on each connection (lib/_http_server.js `connectionListener`), by
 * function name; `onServerResponseClose` goes with `res.detachSocket`.
 */
const HTTP_LISTENERS: readonly (readonly [string, string, boolean])[] = [
  ['data', 'bound socketOnData', true],
  ['end', 'bound socketOnEnd', true],
  ['close', 'bound socketOnClose', true],
  ['error', 'socketOnError', true],
  ['drain', 'bound socketOnDrain', false],
  ['timeout', 'socketOnTimeout', false],
  ['resume', 'onSocketResume', false],
  ['pause', 'onSocketPause', false],
];

// eslint-disable-next-line @typescript-eslint/no-require-imports
const freeParser = (require('node:_http_common') as { freeParser?: (parser: unknown, req: unknown, socket: unknown) => void }).freeParser;

/**
 * Takes the socket of a complete request over from node:http, as it does itself for an `upgrade`:
 * its listeners come off the socket, its parser goes back to the pool (and off the server's list of
 * connections that `headersTimeout`/`requestTimeout` check: a stream is never timed out), and the
 * response lets go of the socket; nothing then refers to the request or the response, and they are
 * collected. The socket keeps reading (and drops what it reads) so that the peer's leaving is
 * seen: its end closes the socket ('close' releases the session), an error destroys it. Returns
 * false, touching nothing, when the internals are not the ones known here (then the caller answers
 * through the response as before).
 */
export function takeOver(req: IncomingMessage, res: ServerResponse, socket: Socket): boolean {
  const s = socket as HttpSocket;
  const parser = s.parser;
  if (!freeParser || !parser || s._httpMessage !== res || !req.complete || typeof res.detachSocket !== 'function') return false;
  const found: [string, (...a: unknown[]) => void][] = [];
  for (const [event, name, required] of HTTP_LISTENERS) {
    const fns = socket.listeners(event).filter((f) => f.name === name) as ((...a: unknown[]) => void)[];
    if (fns.length > 1 || (required && fns.length === 0)) return false;
    if (fns.length) found.push([event, fns[0]]);
  }
  res.detachSocket(socket);
  for (const [event, fn] of found) socket.removeListener(event, fn);
  parser.finish();
  freeParser(parser, req, socket);
  socket.on('end', peerEnded);
  socket.on('error', ignoreError);
  socket.resume();
  return true;
}

/** The peer closed its side: close ours (what node:http does for a server without half-open connections). */
function peerEnded(this: Socket): void {
  this.end();
}

/** A reset or a write to a closed peer: the socket is destroyed and 'close' follows. */
function ignoreError(): void {}

/** Frames through the Node response (its own framing: chunked on HTTP/1.1). */
class ResponseSink implements Sink {
  constructor(
    private readonly res: ServerResponse,
    /** Kept: the response lets go of its socket once it finished. */
    private readonly socket: Socket,
  ) {}
  write(chunk: Buffer): void {
    this.res.write(chunk);
  }
  end(): void {
    this.res.end();
  }
  destroy(): void {
    this.socket.destroy();
  }
  queuedBytes(): number {
    return this.res.writableLength;
  }
  onDrain(cb: () => void): void {
    if (this.res.writableNeedDrain) this.res.once('drain', cb);
    else cb();
  }
}

/**
 * The SSE frame of a live event after its `id:` line (one per event, shared by every stream through
 * {@link LiveEvent.encoded}).
 */
const sseFrame = (e: LiveEvent): Buffer => Buffer.from(sse.frame(e.type, e.envelope));
/**
 * The whole SSE event with the cursor of a one-channel connection (`LiveEvent.soloCursor`: the same for every such
 * connection on the channel), encoded once per event and shared like {@link sseFrame}.
 */
const sseSoloEvent = (e: LiveEvent): Buffer => Buffer.from(sse.event(e.soloCursor, e.type, e.envelope));

/** The `retry:` frame every stream opens with, one Buffer per RETRY_MS value (the last one asked for). */
let lastRetry: { ms: number; frame: Buffer } | undefined;
function retryFrame(ms: number): Buffer {
  if (lastRetry?.ms !== ms) lastRetry = { ms, frame: Buffer.from(sse.retry(ms)) };
  return lastRetry.frame;
}

/** The comment that says why a stream ends (none: the `retry:` hint says it all). */
const END_COMMENTS: Record<EndReason, ((detail?: string) => string | undefined) | undefined> = {
  drain: () => 'draining; reconnect',
  shutdown: undefined,
  resync: () => 'redis reconnected; reconnect and resume from your last event id',
  recycle: undefined,
  revoked: () => 'revoked: get a new ticket',
  'held-overflow': () => 'catching up: reconnect and resume from your last event id',
  slow: () => 'slow consumer: reconnect and resume from your last event id',
  failed: (detail) => detail,
};

/**
 * An SSE stream over a {@link Sink} (queued and flushed per window: {@link QueuedTransport}). The
 * first frame is the `retry:` hint; the last, why the stream ends.
 */
export class SseTransport extends QueuedTransport implements Transport {
  readonly unidirectional = true;

  constructor(
    sink: Sink,
    window: FlushWindow,
    /** Bytes the sink may hold for a slow reader after a flush before its owner is told it is slow (MAX_QUEUED_BYTES). */
    maxQueuedBytes: number,
    /** The reconnect delay sent first, in milliseconds (RETRY_MS). */
    retryMs: number,
  ) {
    super(sink, window, maxQueuedBytes);
    // Sent with the first page or `ready` (and the head with it): one write per connect.
    this.prelude(retryFrame(retryMs));
  }

  page(resets: readonly string[], envelopes: readonly string[], ids?: PageIds): void {
    let out = '';
    for (const ch of resets) out += sse.reset(ch, ids?.resets);
    envelopes.forEach((env, i) => (out += sse.event(ids?.events[i] ?? '', envelopeType(env), env)));
    this.write(out);
  }

  ready(cursor: string, channels: readonly string[]): void {
    this.write(sse.ready(cursor, channels));
  }

  /** `event: presence` (no `id:`: it moves no cursor). */
  presence(json: string): void {
    this.write(`event: presence\ndata: ${json}\n\n`);
  }

  /**
   * The connection's `id:` line, then the event's frame. A one-channel connection's cursor is the event's own
   * (`soloCursor`): the whole event is one buffer shared by every such stream, as before the cursor. A connection of
   * several channels has a cursor of its own: its line and the shared frame are copied into one buffer (measured
   * cheaper than writing the two on a corked socket, `npm run bench`: docs/DESIGN.md, "Switching over", step 3).
   */
  event(event: LiveEvent, cursor = ''): void {
    if (cursor === event.soloCursor) this.enqueue(event.encoded(sseSoloEvent));
    else this.enqueue(sse.withId(cursor, event.encoded(sseFrame)));
  }

  heartbeat(): void {
    this.write(sse.HEARTBEAT);
  }

  /** A `retry:` hint and a comment that says why. */
  protected lastWords(ending: Ending): string {
    const text = END_COMMENTS[ending.reason]?.(ending.detail);
    let last = ending.retryMs !== undefined ? sse.retry(ending.retryMs) : '';
    if (text) last += sse.comment(text);
    return last;
  }

  protected finish(): void {
    this.sink.end();
  }
}
