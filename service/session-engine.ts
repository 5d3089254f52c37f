import type Redis from 'ioredis';
import type { Logger } from 'pino';
import { parseChannelList, type ParsedChannel } from '../core/channels';
import { RealtimeError, toRealtimeError } from '../core/errors';
import type { ConnectionCursor } from '../core/cursor';
import { backlog, currentCursor, isInvalidCursor, replay, type Cursors, type ReplayResult } from '../core/events';
import { waitReady } from '../core/redis/client';
import { catchUpPage, replayChannelPages } from '../core/ws-session';
import type { Authorized } from './auth';
import type { ServiceConfig } from './config';
import type { Hub } from './hub';
import type { ServiceMetrics } from './metrics';
import type { TaskPresence } from './presence';
import { assertMaySeePresence, presenceJson, presenceMode, type PresenceSnapshot } from '../core/presence';
import { Revocations } from './revocations';
import { Session, type SessionKind, type SessionPolicy } from './session';
import { jitter, type Transport } from './transport';

/** What admission established about a request (service/admission.ts). */
export interface Admitted {
  readonly channels: readonly ParsedChannel[];
  /** The client's cursor over the channels (`core/cursor.ts`); none: start at the channels' current positions. */
  readonly cursor?: ConnectionCursor;
  readonly names: readonly string[];
  readonly auth: Authorized;
  /** When it was admitted, epoch milliseconds. */
  readonly now: number;
  /** The hub's mark taken before the ticket was redeemed (no cursor, every channel subscribed then). */
  readonly mark?: number;
  /** The client's cursor could not be real (a native stream): start from now with every channel reset. */
  readonly resetAll?: boolean;
  /** Gives back the client's place under its caps (service/quotas.ts); called when the session is released. */
  readonly lease?: () => void;
}

export interface SessionEngineDeps {
  readonly config: ServiceConfig;
  readonly redis: Redis;
  readonly hub: Hub;
  readonly metrics: ServiceMetrics;
  readonly log: Logger;
  /** Milliseconds since the epoch. */
  readonly now: () => number;
  /** Presence (service/presence.ts): a user's sessions join the channels whose namespace has it on. None: off everywhere. */
  readonly presence?: TaskPresence;
}

/**
 * Every session of this process, whatever its transport (an SSE stream, a long poll, a `/live`
 * WebSocket): opening one (hub subscription, catch-up replay in pages, then live), a WebSocket's
 * later subscriptions (each with its floor, its `since` replay and its held events), catching
 * streams up after the Redis subscriber reconnects, heartbeats and recycling before the reconnect
 * cookie expires, slow readers, revocation, and ending them all when the task drains or closes. The
 * wire is the transports' business (service/transport.ts). (Model: centrifuge `client.go`, one
 * client over every transport.)
 */
export class SessionEngine {
  /** SSE streams (they count as connections, get heartbeats, are caught up and drained in a spread). */
  readonly streams = new Set<Session>();
  /** Long polls admitted and not answered yet (they count toward MAX_CONNECTIONS with the streams). */
  readonly polls = new Set<Session>();
  /** `/live` WebSockets (long-lived like streams; told to reconnect after a Redis reconnect). */
  readonly sockets = new Set<Session>();
  readonly revocations: Revocations;
  private readonly config: ServiceConfig;
  private readonly policies: Record<SessionKind, SessionPolicy>;
  /** The user (and the ticket's presence `info`) of each session that joins presence. */
  private readonly presenceSubs = new WeakMap<Session, { readonly sub: string; readonly info?: object }>();
  /** Per session, the end of its setup and the catch-ups queued after it ({@link serially}). */
  private readonly syncs = new WeakMap<Session, Promise<void>>();

  constructor(private readonly deps: SessionEngineDeps) {
    this.config = deps.config;
    this.revocations = new Revocations(deps.now);
    const slow = (s: Session) => this.dropSlow(s);
    const held = { maxHeld: deps.config.maxHeldEvents, heldOverflow: (s: Session) => this.dropHeld(s), slow };
    this.policies = {
      stream: held,
      socket: held,
      poll: { maxHeld: Number.POSITIVE_INFINITY, heldOverflow: () => undefined, slow },
    };
    deps.hub.onResubscribed = (channels) => this.catchUpAfterReconnect(channels);
  }

  /** Streams, polls and sockets open now. */
  get size(): number {
    return this.streams.size + this.polls.size + this.sockets.size;
  }

  private setOf(kind: SessionKind): Set<Session> {
    return kind === 'stream' ? this.streams : kind === 'poll' ? this.polls : this.sockets;
  }

  /**
   * Registers a session of `kind` over `transport` for an admitted request: tracked for revocation,
   * and (streams with a reconnect cookie) due for recycling before the cookie expires. Start it with
   * {@link start}; call {@link release} when its peer leaves.
   */
  open(kind: SessionKind, transport: Transport, a: Admitted): Session {
    const stream = kind === 'stream';
    const session = new Session(kind, transport, a.names, this.policies[kind]);
    if (stream && a.auth.sessionExp) {
      // Recycle well before the cookie expires so reconnects stay authorised; a cookie that reached the
      // session's absolute end cannot be renewed: the stream ends with it.
      const life = a.auth.sessionExp - a.now;
      session.closeAt = a.auth.sessionFinal ? a.auth.sessionExp : a.now + Math.round(life * recyclePoint());
    }
    this.setOf(kind).add(session);
    session.lease = a.lease;
    const id = a.auth.identity;
    if (id.kind === 'user') session.untrack = this.revocations.track(id.sub, a.auth.epoch ?? 0, () => session.end({ reason: 'revoked' }));
    if (id.kind === 'user' && this.deps.presence) {
      this.presenceSubs.set(session, { sub: id.sub, info: a.auth.info });
      this.presenceJoin(session, a.channels);
    }
    return session;
  }

  /**
   * A stream's presence snapshots (its channels with presence `members`), once it is live: the client applies the
   * `presence.*` events above each snapshot's position (the ones before it, or delivered before it, it ignores).
   */
  private sendPresence(session: Session, channels: readonly ParsedChannel[]): void {
    if (!this.deps.presence || session.kind !== 'stream') return;
    void (async () => {
      for (const json of await this.presenceJsons(session, channels)) if (!session.closed) session.transport.presence?.(json);
    })().catch((err: Error) => this.deps.log.warn({ err: err.message }, 'presence: snapshot failed'));
  }

  /** The snapshots (`presenceJson`) of `channels` that keep presence, in order: a stream once live, a long poll's `presence=1`. */
  async presenceJsons(session: Session, channels: readonly ParsedChannel[]): Promise<string[]> {
    const out: string[] = [];
    for (const ch of channels) if (presenceMode(ch) !== 'off') out.push(presenceJson(ch, await this.presenceSnapshot(session, ch)));
    return out;
  }

  /** The members of `ch` for `session` (a `/live` `presence` action): only on a channel it is subscribed to, with presence on. */
  async presenceSnapshot(session: Session, ch: ParsedChannel): Promise<PresenceSnapshot> {
    assertMaySeePresence(ch, session.floor(ch.channel) !== undefined || session.channels.includes(ch.channel));
    if (!this.deps.presence) throw new RealtimeError('forbidden', `Namespace ${ch.namespace} keeps no presence ("presence" is off).`);
    return this.deps.presence.snapshot(ch);
  }

  /** The session's user joins the presence of `channels` (those with presence on); a failure is logged, the session goes on. */
  private presenceJoin(session: Session, channels: readonly ParsedChannel[]): void {
    const member = this.presenceSubs.get(session);
    if (member === undefined || !this.deps.presence) return;
    this.deps.presence.join(session, channels, member.sub, member.info).catch((err: Error) => this.deps.log.warn({ err: err.message }, 'presence: join failed'));
  }

  /**
   * Subscribes the session's channels, replays what it missed after `cursor` and goes live. No round trip to Redis
   * after the ticket's, when the hub shows nothing can have been missed:
   * - a session without a cursor whose ticket's redemption read its channels' positions while they were subscribed
   *   (`admitted`: the hub's mark and those positions) goes live at those positions, when nothing above them arrived
   *   meanwhile;
   * - a session resuming from a cursor that is each channel's position now as the hub knows it (`Hub.addCaughtUp`:
   *   read since the subscription stands, or the last event that arrived since) goes live there: nothing above it was
   *   published, or it would have arrived, so there is nothing to replay or reset;
   * - a stream of one channel resuming from a cursor within what the hub holds of the channel (`Hub.addCaughtUp`: the
   *   events above an earlier replay's start, and those that arrived since) gets the events above its cursor from there,
   *   each encoded once for every stream that gets it, and goes live after them.
   */
  start(session: Session, channels: readonly ParsedChannel[], cursor: ConnectionCursor | undefined, admitted?: Admitted): Promise<void> {
    return this.serially(session, () => this.setUp(session, channels, cursor, admitted));
  }

  /**
   * Runs `step` (the session's setup, or a catch-up after a lapse) once the session's earlier ones ended: each reads
   * from the positions the last one left, and one that ran beside another would read positions the other then moves
   * past (its replay sending again what was sent, its `goLive` moving the cursor back below events delivered; the
   * failure model in docs/DESIGN.md).
   */
  private serially(session: Session, step: () => Promise<void>): Promise<void> {
    const before = this.syncs.get(session);
    const run = before ? before.then(step) : step();
    this.syncs.set(
      session,
      run.catch(() => undefined),
    );
    return run;
  }

  private async setUp(session: Session, channels: readonly ParsedChannel[], cursor: ConnectionCursor | undefined, admitted?: Admitted): Promise<void> {
    const hub = this.deps.hub;
    // A stream may be caught up from the events the hub holds (one page at most); a long poll only when it missed nothing.
    const caughtUp = cursor !== undefined && !admitted?.resetAll ? hub.addCaughtUp(session.channels, session, cursor.positions, session.kind === 'stream' ? this.config.replayMaxEvents : 0) : undefined;
    if (caughtUp) {
      if (session.kind === 'stream') this.deps.metrics.replays++;
      session.resume(caughtUp.events, caughtUp.positions);
      this.sendPresence(session, channels);
      return;
    }
    const known = admitted?.auth.positions;
    const positions = known && session.channels.map((c) => known.get(c));
    if (
      cursor === undefined &&
      !admitted?.resetAll &&
      admitted?.mark !== undefined &&
      positions !== undefined &&
      positions.every((p) => p !== undefined) &&
      hub.addAt(session.channels, session, admitted.mark, positions as number[])
    ) {
      hub.learn(session.channels, admitted.mark, positions as number[]);
      session.goLive(positions as number[]);
      this.sendPresence(session, channels);
      return;
    }
    await hub.add(session.channels, session);
    await this.catchUp(session, channels, cursor, admitted?.resetAll);
    this.sendPresence(session, channels);
  }

  /**
   * A client's subscription to `ch` on a bidirectional session (a WebSocket `subscribe`), resuming
   * after `cursor` when given. A new subscription holds its live events while the hub subscribes,
   * its floor is read and what the client missed up to it is replayed; then `subscribed`, then what
   * arrived meanwhile above the floor: no gap, no duplicate. An existing subscription keeps its floor
   * (what is above it was delivered live). Throws `too_many_channels` past
   * MAX_CHANNELS_PER_CONNECTION, `unavailable` past MAX_CHANNELS_PER_TASK.
   */
  async subscribe(session: Session, ch: ParsedChannel, cursor: number | undefined): Promise<void> {
    const core = this.config.core;
    const existing = session.floor(ch.channel);
    if (existing !== undefined) {
      await this.replaySince(session, ch, cursor, existing, false);
      if (!session.closed) session.transport.subscribed?.(ch.channel, existing);
      return;
    }
    if (session.size >= core.maxChannelsPerConnection) {
      throw new RealtimeError('too_many_channels', `At most ${core.maxChannelsPerConnection} channels per connection; unsubscribe from one first.`);
    }
    session.add(ch.channel);
    let floor: number;
    try {
      await this.deps.hub.add([ch.channel], session);
      [floor] = await currentCursor([ch], { redis: this.deps.redis, config: core });
      session.setFloor(ch.channel, floor);
      await this.replaySince(session, ch, cursor, floor, true);
    } catch (err) {
      this.unsubscribe(session, ch.channel);
      throw err;
    }
    if (!session.closed) session.transport.subscribed?.(ch.channel, floor);
    session.release(ch.channel);
    this.presenceJoin(session, [ch]);
  }

  /** Ends a client's subscription to `channel` (none is fine). */
  unsubscribe(session: Session, channel: string): void {
    if (!session.remove(channel)) return;
    this.deps.hub.remove([channel], session);
    this.deps.presence?.leave(session, [channel]).catch((err: Error) => this.deps.log.warn({ err: err.message }, 'presence: leave failed'));
  }

  /**
   * What a `since` subscribe missed up to `floor`, a page at a time (REPLAY_MAX_EVENTS, REPLAY_MAX_BYTES): each page is
   * read once the transport took what was written before (an earlier subscribe's pages too), so it never holds more
   * than a page for its reader and a replay holds one page in memory.
   */
  private async replaySince(session: Session, ch: ParsedChannel, cursor: number | undefined, floor: number, added: boolean): Promise<void> {
    if (cursor === undefined || !(await session.transport.nextPage())) return;
    const deps = { redis: this.deps.redis, config: this.config.core };
    const budget = { maxEvents: this.config.replayMaxEvents };
    const first = await catchUpPage(ch, cursor, floor, added, deps, budget);
    session.page(first.resets, first.envelopes);
    if (!first.rest) return;
    for await (const page of replayChannelPages(ch, first.rest.after, first.rest.floor, deps, budget)) {
      if (!(await session.transport.nextPage())) return;
      session.page(page.resets, page.envelopes);
    }
  }

  /** A stream whose setup failed: tell it to come back later. */
  failed(session: Session, err: unknown): void {
    const e = toRealtimeError(err);
    this.deps.log.warn({ code: e.code }, 'stream setup failed');
    session.end({ reason: 'failed', retryMs: jitter(this.config.retryMs) * 2, detail: e.code });
  }

  /** The session's peer left (or it was answered): stop tracking it. Idempotent. */
  release(session: Session): void {
    if (session.released) return;
    session.released = true;
    session.gone();
    this.setOf(session.kind).delete(session);
    this.deps.hub.remove(session.channels, session);
    session.untrack?.();
    session.lease?.();
    this.deps.presence?.leave(session).catch((err: Error) => this.deps.log.warn({ err: err.message }, 'presence: leave failed'));
  }

  /** A revocation arrived (control channel): ends the sessions of `sub` that predate `epoch`. */
  revoked(sub: string, epoch: number): number {
    return this.revocations.heard(sub, epoch);
  }

  /**
   * Replays what `session` missed after `cursor` (or starts it at the current position), then goes
   * live. The replay is read in pages of REPLAY_MAX_EVENTS, each once the transport took the last
   * one (a stream: once its reader kept up; a reader that falls behind is closed by the slow-consumer
   * cap and resumes by id); a long poll takes one page and answers `more`.
   */
  private async catchUp(session: Session, channels: readonly ParsedChannel[], cursor: Cursors | undefined, resetAll = false): Promise<void> {
    const deps = { redis: this.deps.redis, config: this.config.core };
    const limit = this.config.replayMaxEvents;
    // A cursor that cannot be real (found by Redis, whose clock decides): a long poll is refused (400); a stream,
    // whose head is out, starts from now with every channel reset. Nothing shared was written either way.
    const fromNow = async (): Promise<ReplayResult> => ({ events: [], resets: [...session.channels], positions: await currentCursor(channels, deps), more: false });
    let r: ReplayResult;
    let fresh = resetAll;
    // Taken before the read: a whole first page ends at the channels' positions, which the hub keeps (Hub.learn).
    const mark = this.deps.hub.mark(session.channels);
    try {
      r = resetAll ? await fromNow() : await backlog(channels, cursor, deps, limit);
    } catch (err) {
      if (session.kind !== 'stream' || !isInvalidCursor(err)) throw err;
      fresh = true;
      r = await fromNow();
    }
    // The connection's cursor starts where the client was, or lower where the replay put a channel lower (a shared
    // cursor above a quiet channel, a channel whose events are all gone); without a cursor, where the replay put it.
    const from = cursor === undefined ? undefined : 'positions' in cursor ? cursor.positions : cursor;
    if (!r.more) {
      // A whole replay of one channel from a real cursor, with no reset: the hub keeps its events with the position.
      let replayed: Parameters<Hub['learn']>[3];
      if (from && !fresh && !r.resets.length && channels.length === 1 && session.channels.length === 1) {
        const { historySize, historyTtlSeconds } = channels[0].policy;
        replayed = { from: from[0], envelopes: r.events, keep: historySize, ttlMs: historyTtlSeconds * 1000 };
      }
      this.deps.hub.learn(session.channels, mark, r.positions, replayed);
    }
    if (cursor !== undefined && session.kind === 'stream') {
      this.deps.metrics.replays++;
      this.deps.metrics.resets += r.resets.length;
    }
    session.startAt(from && !fresh ? r.positions.map((p, i) => Math.min(p, from[i])) : r.positions);
    let more = false;
    for (;;) {
      // A later page may find history gone meanwhile (trimmed or expired while the reader was slow): its resets come first.
      session.page(r.resets, r.events);
      if (session.closed) return;
      if (!r.more) break;
      const next = await session.transport.nextPage();
      if (session.closed) return;
      if (!next) {
        more = true;
        break;
      }
      r = await replay(channels, r.positions, deps, limit);
    }
    session.goLive(r.positions, more);
  }

  /**
   * After the subscriber reconnects, replay to each live stream what was published while it was
   * away: CATCHUP_CONCURRENCY streams at a time; live events are held meanwhile, at most
   * MAX_HELD_EVENTS per stream (past it the stream is closed and resumes by id). Waiting polls answer
   * now; sockets are told to reconnect (jittered) and resubscribe with `since` per channel. `lapsed` names the
   * channels whose subscriptions lapsed when only some did (one shard's on a Redis Cluster): only the sessions holding
   * one of them are concerned.
   */
  private catchUpAfterReconnect(lapsed?: readonly string[]): void {
    const { log, metrics } = this.deps;
    const hit = lapsed && new Set(lapsed);
    const concerned = (s: Session) => !hit || s.channels.some((c) => hit.has(c));
    log.warn({ streams: this.streams.size, channels: lapsed?.length ?? 'all' }, 'redis subscriber reconnected; catching streams up');
    metrics.redisReconnects++;
    const namespaces = this.config.core.namespaces;
    // Waiting long polls missed what was published while the subscriber was away: answer them now.
    for (const p of [...this.polls].filter(concerned)) p.end({ reason: 'resync' });
    for (const w of [...this.sockets].filter(concerned)) w.end({ reason: 'resync', retryMs: jitter(this.config.retryMs) });
    const streams = [...this.streams].filter((s) => !s.closed && concerned(s));
    // Hold live events from now on, so nothing is written out of order while the replay runs.
    for (const s of streams) s.hold();
    const retry = () => ({ reason: 'failed' as const, retryMs: jitter(this.config.retryMs) });
    let next = 0;
    const worker = async () => {
      while (next < streams.length) {
        const s = streams[next++];
        // After the stream's setup (or an earlier catch-up) ended: from the positions it left.
        await this.serially(s, async () => {
          if (s.closed) return;
          s.resyncing();
          // A stream of one channel behind a position the hub holds the events above (an earlier stream's replay): from there.
          const held = s.size === 1 ? this.deps.hub.heldSince(s.channels, s.positions, this.config.replayMaxEvents) : undefined;
          if (held) {
            metrics.replays++;
            s.resume(held.events, held.positions);
            return;
          }
          const channels = parseChannelList(s.channels as string[], namespaces, Number.MAX_SAFE_INTEGER);
          await this.catchUp(s, channels, s.positions).catch(() => s.end(retry()));
        });
      }
    };
    const run = async () => {
      await waitReady(this.deps.redis, 10_000);
      await Promise.all(Array.from({ length: Math.min(this.config.catchupConcurrency, streams.length) }, worker));
    };
    run().catch(() => {
      for (const s of streams) s.end(retry());
    });
  }

  /** Heartbeat tick: a keep-alive to every stream and socket, or its recycling once due. */
  beat(): void {
    const now = this.deps.now();
    for (const s of this.sockets) s.heartbeat();
    for (const s of this.streams) {
      if (s.closeAt && now >= s.closeAt) {
        // Recycle before the reconnect cookie expires: the browser reconnects with it and gets a fresh one.
        s.end({ reason: 'recycle', retryMs: jitter(this.config.retryMs) });
        continue;
      }
      s.heartbeat();
    }
  }

  /**
   * Moves every session away: polls answer at once; streams and sockets are told to reconnect
   * (jittered) and closed, spread over the first half of `deadlineMs` so the other tasks are not hit
   * by one wave. Resolves when all of them are gone or `deadlineMs` passed.
   */
  async drain(deadlineMs: number): Promise<void> {
    const log = this.deps.log;
    log.info({ streams: this.streams.size, sockets: this.sockets.size, deadlineMs }, 'draining');
    for (const p of this.polls) p.end({ reason: 'drain' });
    const streams = [...this.streams, ...this.sockets];
    const spread = deadlineMs / 2;
    const start = Date.now();
    for (let i = 0; i < streams.length; i++) {
      const due = start + (streams.length > 1 ? (spread * i) / (streams.length - 1) : 0);
      const wait = due - Date.now();
      if (wait > 5) await new Promise((r) => setTimeout(r, wait));
      streams[i].end({ reason: 'drain', retryMs: jitter(this.config.retryMs) });
    }
    const deadline = start + deadlineMs;
    while (this.streams.size + this.sockets.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    log.info({ left: this.streams.size + this.sockets.size }, 'drained');
  }

  /** Ends every session at once (the service is closing). */
  endAll(): void {
    for (const s of [...this.streams, ...this.sockets]) s.end({ reason: 'shutdown', retryMs: this.config.retryMs });
    for (const p of this.polls) p.end({ reason: 'shutdown' });
  }

  /**
   * More live events arrived during a replay than MAX_HELD_EVENTS: end the stream with a retry
   * hint. Nothing is lost: what was held was never written, so the client resumes from its last id.
   */
  private dropHeld(session: Session): void {
    this.deps.metrics.heldOverflows++;
    this.deps.log.warn({ held: this.config.maxHeldEvents }, 'stream closed: too many live events held during its replay');
    session.end({ reason: 'held-overflow', retryMs: jitter(this.config.retryMs) });
  }

  /** A reader that stopped reading: its backlog passed the cap. It resumes from its last id elsewhere. */
  private dropSlow(session: Session): void {
    this.deps.metrics.slowConsumerDrops++;
    this.deps.log.warn({ queued: session.transport.queuedBytes() }, 'slow consumer closed');
    session.end({ reason: 'slow' });
  }
}

/**
 * Where in its reconnect cookie's life an authenticated stream is recycled: 75 % on average, jittered
 * between 70 and 80 % so the streams of one moment do not all come back together. The one place this
 * is stated; the docs quote it.
 */
export const RECYCLE_AT = { min: 0.7, max: 0.8 } as const;

function recyclePoint(): number {
  return RECYCLE_AT.min + (RECYCLE_AT.max - RECYCLE_AT.min) * Math.random();
}
