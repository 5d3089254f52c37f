import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type Redis from 'ioredis';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { RealtimeError, errorBody, toRealtimeError } from '../core/errors';
import type { HookInvoker } from '../core/hooks';
import type { Fanout, ResumeFanout } from '../core/publishing';
import { redeemTicket, spendTicket } from '../core/tickets';
import { connectChannels } from '../core/ws-session';
import { frames } from '../core/ws-protocol';
import type { ServiceConfig } from './config';
import type { Cors } from './cors';
import type { FlushWindow } from './flush-window';
import type { Hub } from './hub';
import type { ServiceMetrics } from './metrics';
import type { Revocations } from './revocations';
import { jitter } from './transport';
import { WsSocket } from './ws-socket';

/** The path of the WebSocket endpoint on the tasks (the stage path of the API Gateway WebSocket API is `/live` too). */
export const WS_PATH = '/live';

/** Largest client frame in bytes, as on API Gateway; a larger one closes the socket with 1009. */
export const MAX_FRAME_BYTES = 32 * 1024;

/** Close codes the tasks use (RFC 6455 §7.4.1). */
export const WS_CLOSE = {
  /** Draining or shutting down: reconnect (the reason carries `retryMs`) and resubscribe with `since`. */
  goingAway: 1001,
  /** The user's sessions were revoked: get a new ticket. */
  revoked: 1008,
  /** The reader fell behind (MAX_QUEUED_BYTES) or missed pings: reconnect and resubscribe with `since`. */
  tryAgainLater: 1013,
  /** The Redis subscriber reconnected: events may have been missed; reconnect and resubscribe with `since`. */
  restart: 1012,
} as const;

export interface WsEdgeDeps {
  readonly config: ServiceConfig;
  readonly redis: Redis;
  readonly hub: Hub;
  readonly cors: Cors;
  readonly window: FlushWindow;
  readonly metrics: ServiceMetrics;
  readonly revocations: Revocations;
  readonly log: Logger;
  /** Throws the refusal when the task takes no more connections on `channels` (Admission.checkRoom: the same checks as streams and polls). */
  readonly room: (channels: readonly string[]) => void;
  /** Delivery to API Gateway connections of publishes made here (mode `both`). Defaults to none. */
  readonly fanout?: Fanout;
  /** Completes that delivery on an idempotent retry (`duplicate`). Defaults to none. */
  readonly resumeFanout?: ResumeFanout;
  /** Where the namespaces' publish hooks are asked (core/hooks.ts). Defaults to none. */
  readonly hooks?: HookInvoker;
  /** Takes a place under the user's USER_CONNECTIONS cap (service/quotas.ts) or throws the refusal; returns its release. */
  readonly userLease: (sub: string) => () => void;
}

/** A close reason the client can read: why, and when to come back (jittered). */
export function closeReason(reason: string, retryMs?: number): string {
  return JSON.stringify(retryMs === undefined ? { reason } : { reason, retryMs });
}

/**
 * The WebSocket endpoint of the task, `GET /live?ticket=` (an upgrade): the same protocol as the
 * API Gateway WebSocket API, at SSE's cost. Admission of an upgrade, in order: the path; a `ws`
 * ticket (missing: 401; unknown, spent, expired, revoked or another transport's: 403, as API
 * Gateway's authorizer answers); the Origin (ALLOWED_ORIGINS); the task not draining and Redis up;
 * room under MAX_CONNECTIONS (streams, polls and sockets together) and MAX_CHANNELS_PER_TASK.
 * Sockets get a WebSocket ping every HEARTBEAT_MS (inside the ALB idle timeout); one that missed the
 * last one is terminated. A `{"type":"heartbeat"}` frame goes with each ping: browsers do not show
 * pings to scripts, and the client SDK takes a quiet socket that still hears these as alive (no `ping`).
 */
export class WsEdge {
  readonly sockets = new Set<WsSocket>();
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

  get size(): number {
    return this.sockets.size;
  }

  private async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const { config, hub } = this.deps;
    const url = new URL(req.url ?? '/', 'http://localhost');
    const ticket = url.searchParams.get('ticket');
    if (url.pathname !== WS_PATH) {
      // Tickets are single-use whatever the request: one presented on a wrong path is spent too.
      await spendTicket(ticket, { redis: this.deps.redis, config: config.core });
      throw new RealtimeError('not_found', `No WebSocket endpoint at ${url.pathname}; connect to ${WS_PATH}.`);
    }
    if (!ticket) throw new RealtimeError('unauthorized', `Connect with ${WS_PATH}?ticket= (a "ws" ticket from POST /tickets).`);
    let grant;
    try {
      grant = await redeemTicket(ticket, 'ws', { redis: this.deps.redis, config: config.core });
    } catch (err) {
      const e = toRealtimeError(err);
      // As API Gateway's authorizer: every refusal of a presented ticket is a Deny (403).
      throw e.status === 401 ? new RealtimeError('forbidden', e.message) : e;
    }
    this.deps.cors.check(req);
    const channels = connectChannels(grant, config.core.namespaces);
    this.deps.room(channels);
    const lease = this.deps.userLease(grant.sub);
    const identity = { kind: 'user', sub: grant.sub } as const;
    const s = new WsSocket(socket, identity, { channels: grant.channels, byBackend: grant.byBackend }, {
      config,
      redis: this.deps.redis,
      hub,
      window: this.deps.window,
      fanout: this.deps.fanout,
      resumeFanout: this.deps.resumeFanout,
      hooks: this.deps.hooks,
      slow: (x) => this.slow(x),
    });
    // The ticket's subscriptions exist before the 101, as API Gateway's $connect runs before its own.
    let gone = false;
    const early = () => (gone = true);
    socket.once('close', early);
    try {
      await s.start(channels);
    } catch (err) {
      s.released();
      lease();
      throw err;
    }
    socket.off('close', early);
    if (gone || !socket.writable) {
      s.released();
      lease();
      return;
    }
    const ws = await new Promise<WebSocket>((resolve) => this.wss.handleUpgrade(req, socket, head, resolve));
    this.sockets.add(s);
    ws.on('error', () => undefined);
    ws.on('pong', () => (s.alive = true));
    ws.on('close', () => {
      this.sockets.delete(s);
      s.released();
      lease();
    });
    s.untrack = this.deps.revocations.track(grant.sub, grant.epoch, () => s.close(WS_CLOSE.revoked, closeReason('revoked')));
    s.attach(ws);
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

  private slow(s: WsSocket): void {
    this.deps.metrics.slowConsumerDrops++;
    this.deps.log.warn({ queued: s.queuedBytes() }, 'slow websocket closed');
    s.close(WS_CLOSE.tryAgainLater, closeReason('slow'), true);
  }

  /** Heartbeat tick: a WebSocket ping and a heartbeat frame to every socket; one that did not answer the last ping is terminated. */
  beat(): void {
    for (const s of this.sockets) {
      if (!s.alive) {
        s.ws.terminate();
        continue;
      }
      s.alive = false;
      s.ws.ping();
      s.sendText(frames.heartbeat());
    }
  }

  /** The Redis subscriber reconnected: events may have been missed; every socket reconnects and resumes with `since`. */
  resubscribed(): void {
    for (const s of this.sockets) s.close(WS_CLOSE.restart, closeReason('resubscribe', jitter(this.deps.config.retryMs)));
  }

  /**
   * Closes every socket with 1001 and a jittered reconnect hint, spread over the first half of
   * `deadlineMs` (the other tasks are not hit by one wave). Resolves when all are gone or `deadlineMs` passed.
   */
  async drain(deadlineMs: number): Promise<void> {
    const sockets = [...this.sockets];
    const spread = deadlineMs / 2;
    const start = Date.now();
    for (let i = 0; i < sockets.length; i++) {
      const due = start + (sockets.length > 1 ? (spread * i) / (sockets.length - 1) : 0);
      const wait = due - Date.now();
      if (wait > 5) await new Promise((r) => setTimeout(r, wait));
      sockets[i].close(WS_CLOSE.goingAway, closeReason('draining', jitter(this.deps.config.retryMs)));
    }
    const deadline = start + deadlineMs;
    while (this.sockets.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  }

  /** Closes every socket at once (the service is closing). */
  closeAll(): void {
    for (const s of this.sockets) s.close(WS_CLOSE.goingAway, closeReason('shutdown', this.deps.config.retryMs));
    for (const s of this.sockets) s.ws.terminate();
  }
}
