import type { Duplex } from 'node:stream';
import type Redis from 'ioredis';
import type { WebSocket } from 'ws';
import { parseChannel, type ChannelGrant, type ParsedChannel } from '../core/channels';
import { RealtimeError } from '../core/errors';
import { currentCursor, parseCursor, type EventDeps } from '../core/events';
import type { Identity } from '../core/identity';
import type { HookInvoker } from '../core/hooks';
import { publishAndFanout, type Fanout, type ResumeFanout } from '../core/publishing';
import { assertMaySubscribe, catchUpFrames, replayPages } from '../core/ws-session';
import { frames, parseClientFrame } from '../core/ws-protocol';
import type { ServiceConfig } from './config';
import type { FlushWindow, Flushable } from './flush-window';
import type { Hub, Listener, LiveEvent } from './hub';

/**
 * The unmasked text frame (RFC 6455 §5.2, FIN set, no compression) of `payload`, as a server sends
 * it. A live event's frame is built once and written as is to every socket that delivers it.
 */
export function textFrame(payload: Buffer): Buffer {
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x81, n]) : n < 65_536 ? Buffer.from([0x81, 126, n >> 8, n & 0xff]) : Buffer.alloc(10);
  if (n >= 65_536) {
    head[0] = 0x81;
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  return Buffer.concat([head, payload]);
}

/** The WebSocket frame of a live event (one per event, shared by every socket through {@link LiveEvent.encoded}). */
export const wsEventFrame = (e: LiveEvent): Buffer => textFrame(Buffer.from(e.envelope));

/** What every socket of the task shares. */
export interface WsSocketDeps {
  readonly config: ServiceConfig;
  readonly redis: Redis;
  readonly hub: Hub;
  readonly window: FlushWindow;
  /** WebSocket delivery beyond this task's hub (e.g. API Gateway connections in mode `both`). Defaults to none. */
  readonly fanout?: Fanout;
  /** Completes that delivery on an idempotent retry (`duplicate`) when the first attempt did not hand it over. Defaults to none. */
  readonly resumeFanout?: ResumeFanout;
  /** Where the namespaces' publish hooks are asked (core/hooks.ts, called from core/publishing.ts). Defaults to none. */
  readonly hooks?: HookInvoker;
  /** The socket's reader fell behind past MAX_QUEUED_BYTES. */
  slow(socket: WsSocket): void;
}

interface Subscription {
  /** Events up to this id are not for this subscription (replayed by a `since` subscribe instead). */
  readonly floor: number;
  /** The last id delivered live. */
  last: number;
  /** Live events held while the subscription's replay or a publish acknowledgement is under way. */
  held: LiveEvent[] | null;
}

/**
 * One WebSocket connection on the task: the API Gateway protocol (subscribe with `since`,
 * unsubscribe, publish, ping; contract in core/ws-protocol.ts) with the same rules as the Lambda
 * path (core/ws-session.ts), but live delivery comes from this task's hub (Redis pub/sub) instead of
 * the connection registry. Frames from the client are handled one at a time, in order. Everything
 * sent goes through one queue flushed once per window (service/flush-window.ts), so the answers to a
 * frame and the live events keep their order and a burst costs one socket write.
 */
export class WsSocket implements Listener, Flushable {
  closed = false;
  /** False once a heartbeat ping went out and no pong came back yet. */
  alive = true;
  /** Unregisters it from revocation tracking. */
  untrack?: () => void;
  private readonly subs = new Map<string, Subscription>();
  private pending: Buffer[] = [];
  private queue: Promise<void> = Promise.resolve();
  private socketOf?: WebSocket;

  constructor(
    /** The connection being upgraded: frames built here are written to it directly once {@link attach}ed. */
    private readonly socket: Duplex,
    readonly identity: Identity & { kind: 'user' },
    readonly grant: ChannelGrant,
    private readonly deps: WsSocketDeps,
  ) {}

  /** The WebSocket, once the upgrade completed. */
  get ws(): WebSocket {
    if (!this.socketOf) throw new Error('WsSocket: not attached yet');
    return this.socketOf;
  }

  /**
   * The upgrade completed: client frames are handled from now on, and what arrived since {@link start}
   * (live events above the floor) is written after the 101.
   */
  attach(ws: WebSocket): void {
    this.socketOf = ws;
    ws.on('message', (data, isBinary) => {
      const text = isBinary ? undefined : String(data);
      this.queue = this.queue.then(() => this.handle(text));
    });
    if (this.pending.length) this.deps.window.mark(this);
  }

  /** Channels subscribed now. */
  get channels(): string[] {
    return [...this.subs.keys()];
  }

  /**
   * Subscribes the ticket's channels at connect (already filtered by the namespace policies), before
   * the upgrade completes, as API Gateway's `$connect` runs before its 101: their floor is the
   * sequence once the hub's subscriptions are confirmed, so what is published after the client
   * sees the socket open reaches it. Call it once, before {@link attach}.
   */
  async start(channels: readonly string[]): Promise<void> {
    await this.deps.hub.add(channels, this);
    const floor = await currentCursor({ redis: this.deps.redis, config: this.deps.config.core });
    for (const c of channels) this.subs.set(c, { floor, last: floor, held: null });
  }

  onEvent(event: LiveEvent): void {
    const sub = this.subs.get(event.channel);
    if (!sub || this.closed) return;
    if (sub.held) {
      if (sub.held.length >= this.deps.config.maxHeldEvents) {
        this.deps.slow(this);
        return;
      }
      sub.held.push(event);
      return;
    }
    if (event.seq <= sub.last) return;
    sub.last = event.seq;
    this.enqueue(event.encoded(wsEventFrame));
  }

  /** Queues a signal frame (subscribed, error, ...). */
  sendText(text: string): void {
    this.enqueue(textFrame(Buffer.from(text)));
  }

  /** Writes everything queued in one chunk; a reader past MAX_QUEUED_BYTES is reported slow. */
  flush(): void {
    // Before the upgrade completed nothing may be written (the 101 comes first): attach() flushes.
    if (this.pending.length === 0 || this.closed || !this.socketOf) return;
    const chunk = this.pending.length === 1 ? this.pending[0] : Buffer.concat(this.pending);
    this.pending = [];
    this.socket.write(chunk);
    if (this.socket.writableLength > this.deps.config.maxQueuedBytes) this.deps.slow(this);
  }

  /** Bytes waiting for the reader. */
  queuedBytes(): number {
    return this.socket.writableLength;
  }

  /**
   * Closes with `code` and `reason` after what is queued (a close frame follows the last data
   * frame). `hard`: the socket is freed a second later whatever the peer does (a slow reader).
   */
  close(code: number, reason: string, hard = false): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    const ws = this.socketOf;
    if (!ws) return void this.socket.destroy();
    ws.close(code, reason);
    if (hard) setTimeout(() => ws.terminate(), 1000).unref();
  }

  /** The peer went away: drop the hub subscriptions. Idempotent. */
  released(): void {
    this.closed = true;
    this.pending = [];
    const channels = this.channels;
    this.subs.clear();
    this.deps.hub.remove(channels, this);
    this.untrack?.();
    this.untrack = undefined;
  }

  private enqueue(chunk: Buffer): void {
    if (this.closed) return;
    if (this.pending.length === 0) this.deps.window.mark(this);
    this.pending.push(chunk);
  }

  /** One client frame: any failure is answered with an `error` frame and the socket stays usable. */
  private async handle(body: string | undefined): Promise<void> {
    if (this.closed) return;
    try {
      const frame = parseClientFrame(body);
      switch (frame.action) {
        case 'ping':
          this.sendText(frames.pong());
          return;
        case 'subscribe':
          await this.subscribe(frame.channel, frame.since);
          return;
        case 'unsubscribe':
          this.unsubscribe(frame.channel);
          return;
        case 'publish':
          await this.publish(frame);
          return;
      }
    } catch (err) {
      this.sendText(frames.error(err));
    }
  }

  /**
   * A new subscription holds its live events while it reads its floor and replays what the client
   * missed up to it; then `subscribed`, then what arrived meanwhile above the floor: no gap, no
   * duplicate. An existing subscription keeps its floor (what is above it was delivered live).
   */
  private async subscribe(channel: unknown, since: unknown): Promise<void> {
    const core = this.deps.config.core;
    const ch = parseChannel(channel, core.namespaces);
    const cursor = since === undefined || since === null ? undefined : parseCursor(since);
    assertMaySubscribe(this.identity, ch, this.grant);
    const deps = { redis: this.deps.redis, config: core };
    const existing = this.subs.get(ch.channel);
    if (existing) {
      await this.catchUp(ch, cursor, existing.floor, false, deps);
      this.sendText(frames.subscribed(ch.channel, existing.floor));
      return;
    }
    if (this.subs.size >= core.maxChannelsPerConnection) {
      throw new RealtimeError('too_many_channels', `At most ${core.maxChannelsPerConnection} channels per connection; unsubscribe from one first.`);
    }
    const held: LiveEvent[] = [];
    const pendingSub: Subscription = { floor: Number.MAX_SAFE_INTEGER, last: 0, held };
    this.subs.set(ch.channel, pendingSub);
    let sub: Subscription;
    try {
      await this.deps.hub.add([ch.channel], this);
      const floor = await currentCursor(deps);
      sub = { floor, last: floor, held };
      this.subs.set(ch.channel, sub);
      await this.catchUp(ch, cursor, floor, true, deps);
    } catch (err) {
      if (this.subs.get(ch.channel)?.held === held) {
        this.subs.delete(ch.channel);
        this.deps.hub.remove([ch.channel], this);
      }
      throw err;
    }
    this.sendText(frames.subscribed(ch.channel, sub.floor));
    this.release(sub);
  }

  /**
   * Sends what a `since` subscribe missed up to `floor`, a page at a time (REPLAY_MAX_EVENTS, REPLAY_MAX_BYTES): each
   * page is read once the socket handed what was written before (an earlier subscribe's pages too) to the kernel, so
   * the socket never holds more than a page for its reader and a replay holds one page in memory.
   */
  private async catchUp(ch: ParsedChannel, cursor: number | undefined, floor: number, added: boolean, deps: EventDeps): Promise<void> {
    const budget = { maxEvents: this.deps.config.replayMaxEvents };
    if (cursor !== undefined) await this.drained();
    if (this.closed) return;
    const { frames: first, rest } = await catchUpFrames(ch, cursor, floor, added, deps, budget);
    for (const f of first) this.sendText(f);
    if (!rest) return;
    for await (const page of replayPages(ch, rest.after, rest.floor, deps, budget)) {
      await this.drained();
      if (this.closed) return;
      for (const f of page) this.sendText(f);
    }
  }

  /** Writes what is queued and resolves once the socket handed it to the kernel (or closed). */
  private async drained(): Promise<void> {
    this.flush();
    if (this.closed || this.socket.writableLength === 0) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  private unsubscribe(channel: unknown): void {
    const ch = parseChannel(channel, this.deps.config.core.namespaces);
    if (this.subs.delete(ch.channel)) this.deps.hub.remove([ch.channel], this);
    this.sendText(frames.unsubscribed(ch.channel));
  }

  /**
   * The same publish path as `POST /publish` and the Lambda's `publish` frame (history, sequence,
   * namespace policy, idempotency). The event reaches this task's sockets through Redis pub/sub;
   * the publisher's own copy is held until its `published` frame is queued.
   */
  private async publish(frame: { channel: unknown; type: unknown; data: unknown; idempotencyKey?: unknown }): Promise<void> {
    const own = typeof frame.channel === 'string' ? this.subs.get(frame.channel) : undefined;
    const holding = own && !own.held ? own : undefined;
    if (holding) holding.held = [];
    try {
      await publishAndFanout(
        frame,
        this.identity,
        { redis: this.deps.redis, config: this.deps.config.core, fanout: this.deps.fanout, resumeFanout: this.deps.resumeFanout, hooks: this.deps.hooks },
        this.grant,
        {
          acknowledge: async (r) => this.sendText(frames.published(r.id, r.channel)),
        },
      );
    } finally {
      if (holding && this.subs.get(frame.channel as string) === holding) this.release(holding);
    }
  }

  /** Delivers what a subscription held, in order, and goes live. */
  private release(sub: Subscription): void {
    const held = sub.held ?? [];
    sub.held = null;
    for (const e of held) this.onEvent(e);
  }
}
