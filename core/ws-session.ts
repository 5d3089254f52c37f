import { LAMBDA_SETTINGS } from '../contract/settings';
import { maySubscribe, parseChannel, type ChannelGrant, type ParsedChannel } from './channels';
import type { Namespaces } from './config';
import { addSubscription, connectionGrant, getConnection, registerConnection, removeConnection, removeSubscription, type ConnectionDeps, type ConnectionRecord } from './connections';
import { RealtimeError } from './errors';
import { claimCursor, cursorCannotBeReal, envelopeSeq, isInvalidCursor, parseCursor, replay, type EventDeps, type PageBudget, type PublishResult } from './events';
import type { Identity } from './identity';
import type { HookInvoker } from './hooks';
import { assertMaySeePresence, presenceJson } from './presence';
import { gatewayEnd, gatewayJoin, gatewayLeave } from './presence-gateway';
import { RedisPresence } from './redis/presence';
import { publishAndFanout, type Fanout, type ResumeFanout, type UseCaseLogger } from './publishing';
import { assertNotRevoked, currentEpoch } from './revocation';
import { frames, parseClientFrame, type ClientFrame } from './ws-protocol';

/**
 * What a WebSocket connection can do, independent of who holds the socket: API Gateway (the Lambda
 * handlers, which deliver through the management API); the Fargate tasks' `/live` shares its rules
 * (channels, grants, `since` replay pages) through the session engine. The transport
 * gives two things: `send(connectionId, frame)` (one frame to one connection) and, for publishes,
 * `fanout(channel, envelope)`. Errors are thrown as `RealtimeError`s; the transport's adapter turns
 * them into `error` frames (`frames.error`).
 */

/** What happened to one frame handed to a connection: `gone` when the connection no longer exists. */
export type SendOutcome = 'delivered' | 'gone' | 'failed';

/** Delivers one frame to one connection; never throws. */
export type SendFrame = (connectionId: string, frame: string) => Promise<SendOutcome>;

export interface WsSessionDeps extends ConnectionDeps {
  readonly send: SendFrame;
  /** Delivery of published events to subscribed connections. Defaults to none. */
  readonly fanout?: Fanout;
  /** Completion of an interrupted fan-out on an idempotent retry. Defaults to none. */
  readonly resumeFanout?: ResumeFanout;
  /**
   * Hands the rest of a long `since` replay (events after `after` up to the floor, then the
   * `subscribed` frame) to a worker, so a replay is not bound to one request's timeout. Defaults to
   * none: the whole replay is sent by the caller.
   */
  readonly deferReplay?: (connectionId: string, channel: string, after: number, floor: number) => Promise<void>;
  /** Events of a `since` replay sent by the caller before the rest is deferred. Defaults to `WS_REPLAY_INLINE_MAX`'s. */
  readonly replayInlineMax?: number;
  /** Where the namespaces' publish hooks are asked for the connections' publishes (core/hooks.ts). Defaults to none. */
  readonly hooks?: HookInvoker;
  readonly logger?: UseCaseLogger;
}

/** Sends frames in order and stops at the first `gone` (nothing more can reach that connection). */
export async function sendAll(connectionId: string, list: readonly string[], send: SendFrame): Promise<SendOutcome> {
  let last: SendOutcome = 'delivered';
  for (const frame of list) {
    last = await send(connectionId, frame);
    if (last === 'gone') return last;
  }
  return last;
}

/** What an authorizer established for a connection: the ticket's user, channels and grant. */
export interface ConnectGrant {
  readonly sub: string;
  readonly channels: readonly string[];
  /** True when a trusted backend asked for the ticket (it opens `granted` namespaces). */
  readonly byBackend: boolean;
  /** The user's revocation epoch the ticket carried. */
  readonly epoch: number;
  /** The presence `info` the ticket carried (a backend's). */
  readonly info?: object;
}

/**
 * Registers a new connection with its identity and grant, subscribed to the ticket's channels that
 * the namespace policies still allow (they may have changed since the ticket was issued). A
 * revocation that ran between the ticket's redemption and this registration did not see the
 * connection, so the epoch is checked again once it is registered (a later revocation finds it in
 * the user's set): a revoked connection is unregistered and refused with `unauthorized`.
 * Returns the channels subscribed.
 */
export async function connectSession(connectionId: string, grant: ConnectGrant, deps: ConnectionDeps): Promise<string[]> {
  const allowed = connectChannels(grant, deps.config.namespaces);
  await registerConnection(connectionId, { sub: grant.sub, grant: grant.channels, grantedByBackend: grant.byBackend, channels: allowed, info: grant.info }, deps);
  try {
    assertNotRevoked(Number.isFinite(grant.epoch) ? grant.epoch : 0, await currentEpoch(grant.sub, deps));
  } catch (err) {
    await removeConnection(connectionId, deps);
    throw err;
  }
  await gatewayJoin(connectionId, grant.sub, allowed, deps, grant.info);
  return allowed;
}

/**
 * The rules both WebSocket paths share (API Gateway's registry here, the tasks' session engine in
 * service/session-engine.ts): which channels a connection starts with, who may subscribe to what, and
 * what a `since` subscribe replays below its floor.
 */

/** The ticket's channels that the namespace policies still allow (they may have changed since the ticket was issued). */
export function connectChannels(grant: Pick<ConnectGrant, 'sub' | 'channels' | 'byBackend'>, namespaces: Namespaces): string[] {
  const identity = { kind: 'user', sub: grant.sub } as const;
  const channelGrant: ChannelGrant = { channels: grant.channels, byBackend: grant.byBackend };
  return grant.channels.filter((c) => {
    try {
      return maySubscribe(identity, parseChannel(c, namespaces), channelGrant);
    } catch {
      return false;
    }
  });
}

/** Throws `channel_not_granted` unless the channel is public or in the ticket's grant and allowed by its namespace policy. */
export function assertMaySubscribe(identity: Identity, ch: ParsedChannel, grant: ChannelGrant): void {
  const granted = ch.policy.subscribe === 'public' || (grant.channels.includes(ch.channel) && maySubscribe(identity, ch, grant));
  if (!granted) throw new RealtimeError('channel_not_granted', `The ticket does not grant "${ch.channel}"; get a ticket that names it.`);
}

/** One page of a channel's replay: `reset` when the history cannot cover it, then envelopes, oldest first. */
export interface ChannelPage {
  readonly resets: readonly string[];
  readonly envelopes: readonly string[];
}

/**
 * What a subscription whose live delivery starts after `floor` is sent first for a `since` cursor:
 * `reset` when the history cannot cover it, then the first page of the missed envelopes up to the
 * floor, in order (`subscribed` is the caller's to send). `added`: the subscription is new (not kept
 * from before). The page ends at its budget (`limit`: events, or events and bytes; the config's
 * REPLAY_MAX_BYTES and 1000 events by default); `rest` then says what is left (send it with
 * {@link replayChannelPages}). A cursor that cannot be real gets `reset` and nothing is written.
 * Both WebSocket paths read it: the Lambda's (as frames, {@link catchUpFrames}) and the tasks' session engine.
 */
export async function catchUpPage(
  ch: ParsedChannel,
  cursor: number | undefined,
  floor: number,
  added: boolean,
  deps: EventDeps,
  limit?: number | PageBudget,
): Promise<ChannelPage & { rest?: SubscribePlan['rest'] }> {
  const resets: string[] = [];
  const envelopes: string[] = [];
  if (cursor !== undefined && cursorCannotBeReal(cursor)) {
    resets.push(ch.channel);
  } else if (cursor !== undefined && cursor > floor) {
    // A cursor above the floor of a new subscription is ahead of the channel's position: a failover lost
    // writes and ids the client has seen may be issued again. claimCursor records the range as lost on the
    // channel (and detects the same on an older subscription, whose floor can legitimately be lower).
    // One that cannot be real (Redis's clock decides) is reset without moving anything.
    const reset = await claimCursor(ch, cursor, deps).then(
      (c) => c.reset,
      (err: unknown) => {
        if (isInvalidCursor(err)) return true;
        throw err;
      },
    );
    if (reset || added) resets.push(ch.channel);
  } else if (cursor !== undefined && cursor < floor) {
    const r = await replay([ch], [cursor], deps, limit);
    if (r.resets.includes(ch.channel)) resets.push(ch.channel);
    let last = cursor;
    for (const envelope of r.events) {
      const seq = envelopeSeq(envelope);
      if (seq > cursor && seq <= floor) {
        envelopes.push(envelope);
        last = seq;
      }
    }
    // Cut at the page's budget: the rest (after the last one sent, up to the floor) is for a worker, or the next pages.
    if (r.more && r.positions[0] < floor) return { resets, envelopes, rest: { channel: ch.channel, after: Math.max(last, r.positions[0]), floor } };
  }
  return { resets, envelopes };
}

/** {@link catchUpPage} as WebSocket frames, in order. */
export async function catchUpFrames(...args: Parameters<typeof catchUpPage>): Promise<{ frames: string[]; rest?: SubscribePlan['rest'] }> {
  const { rest, ...page } = await catchUpPage(...args);
  return { frames: pageFrames(page), rest };
}

/**
 * The rest of a `since` replay cut by its page budget: pages (a `reset` if the history was trimmed meanwhile, then
 * envelopes after `after` up to `floor`), each read once the caller took the last.
 */
export async function* replayChannelPages(ch: ParsedChannel, after: number, floor: number, deps: EventDeps, limit?: number | PageBudget): AsyncGenerator<ChannelPage> {
  for (;;) {
    const r = await replay([ch], [after], deps, limit);
    const resets = r.resets.includes(ch.channel) ? [ch.channel] : [];
    const envelopes: string[] = [];
    for (const envelope of r.events) {
      const seq = envelopeSeq(envelope);
      if (seq > after && seq <= floor) envelopes.push(envelope);
    }
    if (resets.length || envelopes.length) yield { resets, envelopes };
    if (!r.more || r.positions[0] >= floor) return;
    after = Math.max(after, r.positions[0]);
  }
}

/** {@link replayChannelPages} as pages of WebSocket frames. */
export async function* replayPages(ch: ParsedChannel, after: number, floor: number, deps: EventDeps, limit?: number | PageBudget): AsyncGenerator<string[]> {
  for await (const page of replayChannelPages(ch, after, floor, deps, limit)) yield pageFrames(page);
}

/** A page as WebSocket frames: its `reset` frames, then its envelopes. */
function pageFrames(page: ChannelPage): string[] {
  return [...page.resets.map((c) => frames.reset(c)), ...page.envelopes];
}

/** Unregisters a connection from every channel (the transport saw it close). */
export async function disconnectSession(connectionId: string, deps: ConnectionDeps): Promise<void> {
  await removeConnection(connectionId, deps);
  await gatewayEnd(connectionId, deps);
}

async function registered(connectionId: string, deps: ConnectionDeps): Promise<ConnectionRecord> {
  const conn = await getConnection(connectionId, deps);
  if (!conn) throw new RealtimeError('unauthorized', 'This connection is no longer registered; reconnect with a new ticket.');
  return conn;
}

/**
 * Subscribes a connection to `channel`, resuming after `since` when given, and returns the frames
 * to send, in order: `reset` when the history cannot cover `since`, the missed envelopes, then
 * `subscribed` with the subscription's floor.
 *
 * The subscription exists before the replay runs: events after its floor come from the fan-out,
 * events up to it from this replay, so nothing is lost or sent twice. An existing subscription (the
 * ticket's channels, subscribed at connect) keeps its floor.
 */
export async function subscribeFrom(connectionId: string, channel: unknown, since: unknown, deps: ConnectionDeps): Promise<string[]> {
  const plan = await planSubscribe(connectionId, channel, since, deps);
  if (!plan.rest) return plan.frames;
  const out = [...plan.frames];
  for await (const page of restOf(plan.rest, deps)) out.push(...page);
  return out;
}

/** The pages of a plan's `rest`, then its `subscribed` frame. */
async function* restOf(rest: NonNullable<SubscribePlan['rest']>, deps: ConnectionDeps): AsyncGenerator<string[]> {
  yield* replayPages(parseChannel(rest.channel, deps.config.namespaces), rest.after, rest.floor, deps);
  yield [frames.subscribed(rest.channel, rest.floor)];
}

/** A subscribe's frames to send now and, with `limit`, the rest of the replay to hand to a worker. */
export interface SubscribePlan {
  readonly frames: string[];
  /** Events after `after` up to `floor`, then `subscribed`, are still to be sent. */
  readonly rest?: { readonly channel: string; readonly after: number; readonly floor: number };
}

/**
 * {@link subscribeFrom} with the replay cut at one page (`limit`: events, or events and bytes; by default 1000 events
 * and REPLAY_MAX_BYTES): when more remain, `frames` holds the first ones (without `subscribed`) and `rest` says what
 * must be sent after them (by a worker, or page by page).
 */
export async function planSubscribe(connectionId: string, channel: unknown, since: unknown, deps: ConnectionDeps, limit?: number | PageBudget): Promise<SubscribePlan> {
  const ch = parseChannel(channel, deps.config.namespaces);
  const cursor = since === undefined || since === null ? undefined : parseCursor(since);
  const conn = await registered(connectionId, deps);
  assertMaySubscribe(conn.identity, ch, connectionGrant(conn));
  const { floor, added } = await addSubscription(connectionId, ch.channel, deps, conn);
  if (added) await gatewayJoin(connectionId, conn.identity.sub, [ch.channel], deps, conn.info);
  const { frames: out, rest } = await catchUpFrames(ch, cursor, floor, added, deps, limit);
  if (rest) return { frames: out, rest };
  out.push(frames.subscribed(ch.channel, floor));
  return { frames: out };
}

/** Ends a connection's subscription to `channel` (none is fine); returns the frames to send. */
export async function unsubscribeFrom(connectionId: string, channel: unknown, deps: ConnectionDeps): Promise<string[]> {
  const ch = parseChannel(channel, deps.config.namespaces);
  if (await removeSubscription(connectionId, ch.channel, deps)) await gatewayLeave(connectionId, ch.channel, deps);
  return [frames.unsubscribed(ch.channel)];
}

/**
 * Publishes for a connection's user, through the same path as `POST /publish`: the namespace
 * policy decides (a `granted` channel only with the channel in a backend's grant). The connection
 * gets `published` before the fan-out, so its own copy of the event follows the acknowledgement.
 */
export async function publishFrom(connectionId: string, frame: Extract<ClientFrame, { action: 'publish' }>, deps: WsSessionDeps): Promise<PublishResult> {
  const conn = await registered(connectionId, deps);
  return publishAndFanout(frame, conn.identity, deps, connectionGrant(conn), {
    acknowledge: (r) => deps.send(connectionId, frames.published(r.id, r.channel)),
    logAttributes: { by: connectionId },
  });
}

/**
 * Handles one client frame (the raw text of a WebSocket message): parses it, runs the action and
 * sends the answers through `deps.send`. Throws a `RealtimeError` for anything the client must be
 * told (send it as `frames.error(err)`); the connection stays usable.
 */
export async function handleFrame(connectionId: string, body: string | undefined, deps: WsSessionDeps): Promise<void> {
  const frame = parseClientFrame(body);
  switch (frame.action) {
    case 'ping':
      await deps.send(connectionId, frames.pong());
      return;
    case 'subscribe': {
      const plan = await planSubscribe(connectionId, frame.channel, frame.since, deps, deps.deferReplay ? (deps.replayInlineMax ?? LAMBDA_SETTINGS.wsReplayInlineMax.default) : undefined);
      let outcome = await sendAll(connectionId, plan.frames, deps.send);
      if (!plan.rest || outcome === 'gone') return;
      // The rest goes through the connection's shard of the fan-out queue, after what was just sent; without a
      // queue, page by page from here.
      if (deps.deferReplay) return deps.deferReplay(connectionId, plan.rest.channel, plan.rest.after, plan.rest.floor);
      for await (const page of restOf(plan.rest, deps)) {
        outcome = await sendAll(connectionId, page, deps.send);
        if (outcome === 'gone') return;
      }
      return;
    }
    case 'unsubscribe':
      await sendAll(connectionId, await unsubscribeFrom(connectionId, frame.channel, deps), deps.send);
      return;
    case 'publish':
      await publishFrom(connectionId, frame, deps);
      return;
    case 'presence':
      await deps.send(connectionId, frames.presence(await presenceOf(connectionId, frame.channel, deps)));
      return;
  }
}

/** A channel's presence snapshot for a connection subscribed to it (who may subscribe may see it), as `presenceJson`. */
async function presenceOf(connectionId: string, channel: unknown, deps: WsSessionDeps): Promise<string> {
  const ch = parseChannel(channel, deps.config.namespaces);
  const conn = await registered(connectionId, deps);
  assertMaySeePresence(ch, conn.subscriptions.has(ch.channel));
  return presenceJson(ch, await new RedisPresence(deps.redis, deps.config).snapshot(ch));
}
