import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type Redis from 'ioredis';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { parseChannel, type ChannelGrant } from '../core/channels';
import { RealtimeError, errorBody, toRealtimeError } from '../core/errors';
import { parseCursor } from '../core/events';
import { presenceJson } from '../core/presence';
import type { Identity } from '../core/identity';
import type { HookInvoker } from '../core/hooks';
import { publishAndFanout, type Fanout, type ResumeFanout } from '../core/publishing';
import { spendTicket } from '../core/tickets';
import { assertMaySubscribe } from '../core/ws-session';
import { frames, parseClientFrame, type ClientFrame } from '../core/ws-protocol';
import type { Admission } from './admission';
import type { ServiceConfig } from './config';
import type { FlushWindow } from './flush-window';
import type { Session } from './session';
import type { SessionEngine } from './session-engine';
import { WsTransport } from './ws-transport';

/** The path of the WebSocket endpoint on the tasks (the stage path of the API Gateway WebSocket API is `/live` too). */
export const WS_PATH = '/live';

/** Largest client frame in bytes, as on API Gateway; a larger one closes the socket with 1009. */
export const MAX_FRAME_BYTES = 32 * 1024;

export interface WsEdgeDeps {
  readonly config: ServiceConfig;
  readonly redis: Redis;
  readonly admission: Admission;
  readonly engine: SessionEngine;
  readonly window: FlushWindow;
  readonly log: Logger;
  /** Delivery to API Gateway connections of publishes made here (mode `both`). Defaults to none. */
  readonly fanout?: Fanout;
  /** Completes that delivery on an idempotent retry (`duplicate`). Defaults to none. */
  readonly resumeFanout?: ResumeFanout;
  /** Where the namespaces' publish hooks are asked (core/hooks.ts, from core/publishing.ts). Defaults to none. */
  readonly hooks?: HookInvoker;
}

/** Who a socket is and what its ticket grants, for its later frames. */
interface Peer {
  readonly session: Session;
  readonly transport: WsTransport;
  readonly identity: Identity;
  readonly grant: ChannelGrant;
}

/**
 * The WebSocket endpoint of the task, `GET /live?ticket=` (an upgrade): the same protocol as the
 * API Gateway WebSocket API (core/ws-protocol.ts), at SSE's cost, run by the same session engine as
 * streams and polls over a {@link WsTransport}. What is WebSocket-specific lives here: the upgrade
 * (the path, then the same admission as a stream: service/admission.ts `admitSocket`, with the
 * refusal as an HTTP answer on the raw socket) and the client's frames, handled one at a time, in
 * order (subscribe and unsubscribe go to the engine; publish takes the same path as `POST /publish`).
 */
export class WsEdge {
  private readonly wss: WebSocketServer;

  constructor(
    server: Server,
    private readonly deps: WsEdgeDeps,
  ) {
    this.wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false, clientTracking: false });
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      socket.on('error', () => undefined);
      this.upgrade(req, socket, head).catch((err) => this.refuse(socket, err));
    });
  }

  private async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const { config, engine } = this.deps;
    const url = new URL(req.url ?? '/', 'http://localhost');
    const ticket = url.searchParams.get('ticket');
    if (url.pathname !== WS_PATH) {
      // Tickets are single-use whatever the request: one presented on a wrong path is spent too.
      await spendTicket(ticket, { redis: this.deps.redis, config: config.core });
      throw new RealtimeError('not_found', `No WebSocket endpoint at ${url.pathname}; connect to ${WS_PATH}.`);
    }
    const admitted = await this.deps.admission.admitSocket(req, ticket);
    const transport = new WsTransport(socket, this.deps.window, config.maxQueuedBytes);
    const session = engine.open('socket', transport, admitted);
    // The ticket's subscriptions exist before the 101, as API Gateway's $connect runs before its own.
    let gone = false;
    const early = () => (gone = true);
    socket.once('close', early);
    try {
      await engine.start(session, admitted.channels, undefined, admitted);
    } catch (err) {
      engine.release(session);
      throw err;
    }
    socket.off('close', early);
    if (gone || !socket.writable || session.closed) return void engine.release(session);
    let upgraded: WebSocket | undefined;
    // Synchronous (no verifyClient): the callback has run when handleUpgrade returns, or never will: ws dropped a socket
    // it could not use (a client that half-closed meanwhile, its FIN read: an SDK giving up on a slow open) or answered
    // a bad handshake itself. The client is gone either way; a session kept for it would be held for good.
    this.wss.handleUpgrade(req, socket, head, (w) => (upgraded = w));
    if (!upgraded) return void engine.release(session);
    const ws: WebSocket = upgraded;
    ws.on('error', () => undefined);
    ws.on('close', () => engine.release(session));
    const peer: Peer = { session, transport, identity: admitted.auth.identity, grant: admitted.auth.grant };
    let queue = Promise.resolve();
    ws.on('message', (data, isBinary) => {
      const text = isBinary ? undefined : String(data);
      queue = queue.then(() => this.handle(peer, text));
    });
    transport.attach(ws);
  }

  /** Answers a refused upgrade on the raw socket: the status and a JSON `{"error"}`. */
  private refuse(socket: Duplex, err: unknown): void {
    const e = toRealtimeError(err);
    if (e.status >= 500) this.deps.log.warn({ code: e.code }, 'websocket upgrade refused');
    if (!socket.writable) return void socket.destroy();
    const body = errorBody(e);
    const retry = e.code === 'unavailable' || e.code === 'rate_limited' ? 'retry-after: 5\r\n' : '';
    socket.end(
      `HTTP/1.1 ${e.status} ${e.code}\r\nconnection: close\r\ncontent-type: application/json\r\ncache-control: no-store\r\n${retry}content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  }

  /** One client frame: any failure is answered with an `error` frame and the socket stays usable. */
  private async handle(peer: Peer, body: string | undefined): Promise<void> {
    if (peer.session.closed) return;
    const { engine, config } = this.deps;
    const namespaces = config.core.namespaces;
    try {
      const frame = parseClientFrame(body);
      switch (frame.action) {
        case 'ping':
          peer.transport.reply(frames.pong());
          return;
        case 'subscribe': {
          const ch = parseChannel(frame.channel, namespaces);
          const cursor = frame.since === undefined || frame.since === null ? undefined : parseCursor(frame.since);
          assertMaySubscribe(peer.identity, ch, peer.grant);
          await engine.subscribe(peer.session, ch, cursor);
          return;
        }
        case 'unsubscribe': {
          const ch = parseChannel(frame.channel, namespaces);
          engine.unsubscribe(peer.session, ch.channel);
          peer.transport.reply(frames.unsubscribed(ch.channel));
          return;
        }
        case 'publish':
          await this.publish(peer, frame);
          return;
        case 'presence': {
          const ch = parseChannel(frame.channel, namespaces);
          peer.transport.presence(presenceJson(ch, await engine.presenceSnapshot(peer.session, ch)));
          return;
        }
      }
    } catch (err) {
      peer.transport.reply(frames.error(err));
    }
  }

  /**
   * The same publish path as `POST /publish` and the Lambda's `publish` frame (history, sequence,
   * namespace policy, idempotency). The event reaches this task's sockets through Redis pub/sub;
   * the publisher's own copy is held until its `published` frame is queued.
   */
  private async publish(peer: Peer, frame: Extract<ClientFrame, { action: 'publish' }>): Promise<void> {
    const own = typeof frame.channel === 'string' ? frame.channel : undefined;
    const holding = own !== undefined && peer.session.hold(own);
    const { redis, config, fanout, resumeFanout, hooks } = this.deps;
    try {
      await publishAndFanout(frame, peer.identity, { redis, config: config.core, fanout, resumeFanout, hooks }, peer.grant, {
        acknowledge: async (r) => peer.transport.reply(frames.published(r.id, r.channel)),
      });
    } finally {
      if (holding) peer.session.release(own);
    }
  }
}
