import type { ChannelGrant } from './channels';
import { DEFAULT_USER_CONNECTIONS, type CoreConfig } from './config';
import { RealtimeError } from './errors';
import type { Identity } from './identity';
import { Keys } from './redis/keys';
import type { RedisLike } from './redis/client';
import { REGISTER, REMOVE, SUBSCRIBE, UNSUBSCRIBE } from './redis/scripts';
import { acquire, dropHolder, gatewayHolder, GATEWAY_LEASE_MS, release } from './occupancy';

/**
 * The registry of API Gateway WebSocket connections, in Redis.
 *
 * - `{prefix}wc:{connectionId}`: a hash with the identity (`s`), the grant (`g`, JSON list of the
 *   ticket's channels, or `{"c": [...], "b": true}` when a backend asked for the ticket), the
 *   registration time (`a`, epoch ms) and one field `c:{channel}` per subscription whose value is
 *   the subscription's floor.
 * - `{prefix}wsub:{channel}`: a set of members `{connectionId}|{floor}`, read in pages by the fan-out.
 * - `{prefix}wu:{sub}`: a set of the user's connection ids, to close them when the user is revoked.
 *
 * The floor is the event sequence at the moment of subscribing, taken in the same atomic step as
 * the SADD: every event with a higher id was published after the subscription existed, so the
 * fan-out delivers it; every event up to the floor is skipped by the fan-out and delivered by the
 * replay of a `since` subscribe instead. That is what makes `since` free of both gaps and
 * duplicates when a publish races a subscribe.
 *
 * Everything expires {@link CONNECTION_TTL_SECONDS} after its last change, beyond API Gateway's
 * two-hour connection limit, so entries whose `$disconnect` never came (API Gateway does not
 * guarantee it) disappear even if no fan-out ever meets them.
 */

/** Seconds a connection's entries outlive their last change: API Gateway's 2 h limit plus an hour. */
export const CONNECTION_TTL_SECONDS = 3 * 3600;

/** The Redis commands the registry needs beyond scripts: ioredis satisfies it. */
export interface ConnectionsRedis extends RedisLike {
  hgetall(key: string): Promise<Record<string, string>>;
  sscan(key: string, cursor: string, countToken: 'COUNT', count: number): Promise<[cursor: string, elements: string[]]>;
  scard(key: string): Promise<number>;
  smembers(key: string): Promise<string[]>;
  exists(key: string): Promise<number>;
  srem(key: string, ...members: string[]): Promise<number>;
}

export interface ConnectionDeps {
  readonly redis: ConnectionsRedis;
  readonly config: CoreConfig;
  /** Milliseconds since the epoch. Defaults to Date.now. */
  readonly now?: () => number;
}

export interface ConnectionRecord {
  readonly connectionId: string;
  readonly identity: Identity & { kind: 'user' };
  /** The ticket's channels. Public-namespace channels are allowed besides these. */
  readonly grant: readonly string[];
  /** True when a trusted backend asked for the ticket (it opens `granted` namespaces). */
  readonly grantedByBackend: boolean;
  /** Epoch ms when `$connect` registered it. */
  readonly registeredAt: number;
  /** Subscribed channels and their floors. */
  readonly subscriptions: ReadonlyMap<string, number>;
}

/** One subscriber as listed for a fan-out. */
export interface Subscriber {
  readonly connectionId: string;
  /** Events with an id up to this are not for this subscription (see the module doc). */
  readonly floor: number;
  /** The raw set member, to remove exactly this entry. */
  readonly member: string;
}

/** The connection's record (`Keys.connection`). */
export function connectionKey(keys: Keys, connectionId: string): string {
  return keys.connection(connectionId);
}
/** The channel's subscriber set (`Keys.channelSubscribers`). */
export function subscribersKey(keys: Keys, channel: string): string {
  return keys.channelSubscribers(channel);
}
const member = (connectionId: string, floor: string | number) => `${connectionId}|${floor}`;

function parseRecord(connectionId: string, h: Record<string, string>): ConnectionRecord | null {
  if (!h || typeof h.s !== 'string') return null;
  const subscriptions = new Map<string, number>();
  for (const [k, v] of Object.entries(h)) if (k.startsWith('c:')) subscriptions.set(k.slice(2), Number(v));
  let grant: string[] = [];
  let byBackend = false;
  try {
    let g = JSON.parse(h.g ?? '[]') as unknown;
    if (g !== null && typeof g === 'object' && !Array.isArray(g)) {
      byBackend = (g as { b?: unknown }).b === true;
      g = (g as { c?: unknown }).c;
    }
    if (Array.isArray(g)) grant = g.filter((c): c is string => typeof c === 'string');
  } catch {
    // an unreadable grant grants nothing beyond public channels
  }
  return { connectionId, identity: { kind: 'user', sub: h.s }, grant, grantedByBackend: byBackend, registeredAt: Number(h.a ?? 0), subscriptions };
}

/** The grant of a registered connection, as the channel policies take it. */
export function connectionGrant(conn: ConnectionRecord): ChannelGrant {
  return { channels: conn.grant, byBackend: conn.grantedByBackend };
}

/**
 * Registers a connection at `$connect` with its identity and grant, subscribed to `channels`
 * (already validated: the ticket's channels). Returns the floor of those subscriptions. A user holds at
 * most USER_CONNECTIONS registered connections (`rate_limited` past it, nothing written); members of
 * the user's set whose registration expired without a `$disconnect` are dropped first, so they do not count.
 */
export async function registerConnection(
  connectionId: string,
  input: { readonly sub: string; readonly grant: readonly string[]; readonly grantedByBackend?: boolean; readonly channels: readonly string[] },
  deps: ConnectionDeps,
): Promise<number> {
  const keys = new Keys(deps.config.keyPrefix);
  const now = (deps.now ?? Date.now)();
  const grant = input.grantedByBackend ? { c: input.grant, b: true } : input.grant;
  const max = deps.config.userConnections ?? DEFAULT_USER_CONNECTIONS;
  const userSet = keys.userConnections(input.sub);
  if (max > 0 && (await deps.redis.scard(userSet)) >= max) await dropExpired(userSet, keys, deps.redis);
  const floor = await REGISTER.run(
    deps.redis,
    [connectionKey(keys, connectionId), keys.seq, userSet, ...input.channels.map((c) => subscribersKey(keys, c))],
    [connectionId, input.sub, JSON.stringify(grant), now, CONNECTION_TTL_SECONDS, max, ...input.channels],
  );
  if (floor === -1) {
    throw new RealtimeError('rate_limited', `At most ${max} WebSocket connections per user at once; close one, or retry later.`);
  }
  // Occupancy (backend events): the connection holds its channels until `$disconnect`, at most API Gateway's 2 hours.
  await acquire(gatewayHolder(connectionId), input.channels, deps, now, now + GATEWAY_LEASE_MS);
  return Number(floor);
}

/** Removes from a user's set the connections whose registration is gone (expired: API Gateway sent no `$disconnect`). */
async function dropExpired(userSet: string, keys: Keys, redis: ConnectionDeps['redis']): Promise<void> {
  const ids = await redis.smembers(userSet);
  const exists = await Promise.all(ids.map((id) => redis.exists(connectionKey(keys, id))));
  const gone = ids.filter((_, i) => exists[i] === 0);
  if (gone.length > 0) await redis.srem(userSet, ...gone);
}

/** The connection's identity, grant and subscriptions; null when unknown (disconnected or expired). */
export async function getConnection(connectionId: string, deps: Pick<ConnectionDeps, 'redis' | 'config'>): Promise<ConnectionRecord | null> {
  const keys = new Keys(deps.config.keyPrefix);
  return parseRecord(connectionId, await deps.redis.hgetall(connectionKey(keys, connectionId)));
}

export interface SubscribeOutcome {
  /** The subscription's floor: events up to it come from replay, later ones from the fan-out. */
  readonly floor: number;
  /** False when the connection was already subscribed and its floor was kept. */
  readonly added: boolean;
}

/**
 * Adds a subscription, or keeps an existing one with its floor (events after that floor are already
 * on their way through the fan-out, so a `since` replay stops at the floor either way). The caller
 * checks the grant first.
 */
export async function addSubscription(connectionId: string, channel: string, deps: ConnectionDeps): Promise<SubscribeOutcome> {
  const keys = new Keys(deps.config.keyPrefix);
  const [status, floor] = (await SUBSCRIBE.run(
    deps.redis,
    [connectionKey(keys, connectionId), keys.seq, subscribersKey(keys, channel)],
    [connectionId, channel, CONNECTION_TTL_SECONDS, deps.config.maxChannelsPerConnection],
  )) as [number, string];
  if (status === -1) throw new RealtimeError('unauthorized', 'This connection is no longer registered; reconnect with a new ticket.');
  if (status === -2) {
    throw new RealtimeError('too_many_channels', `At most ${deps.config.maxChannelsPerConnection} channels per connection; unsubscribe from one first.`);
  }
  if (status === 0) await acquire(gatewayHolder(connectionId), [channel], deps, (deps.now ?? Date.now)());
  return { floor: Number(floor), added: status === 0 };
}

/** Removes a subscription; false when there was none. */
export async function removeSubscription(connectionId: string, channel: string, deps: Pick<ConnectionDeps, 'redis' | 'config'>): Promise<boolean> {
  const keys = new Keys(deps.config.keyPrefix);
  const n = await UNSUBSCRIBE.run(deps.redis, [connectionKey(keys, connectionId), subscribersKey(keys, channel)], [connectionId, channel]);
  if (Number(n) === 1) await release(gatewayHolder(connectionId), [channel], deps, Date.now());
  return Number(n) === 1;
}

export interface RemoveOptions {
  /**
   * Keep a connection registered at or after this time (epoch ms): API Gateway answers 410 to a post
   * while the connection is still inside `$connect`, which must not unregister it. Defaults to
   * removing unconditionally (`$disconnect`).
   */
  readonly registeredBefore?: number;
  /** A set member seen by a fan-out, removed even when the record is already gone. */
  readonly seen?: { readonly channel: string; readonly member: string };
}

/**
 * Removes a connection from every channel it was in and deletes its record. Returns false when a
 * young connection was kept (see {@link RemoveOptions.registeredBefore}).
 */
export async function removeConnection(connectionId: string, deps: Pick<ConnectionDeps, 'redis' | 'config'>, options: RemoveOptions = {}): Promise<boolean> {
  const keys = new Keys(deps.config.keyPrefix);
  const record = await getConnection(connectionId, deps);
  const entries: [string, string][] = [];
  for (const [channel, floor] of record?.subscriptions ?? []) entries.push([subscribersKey(keys, channel), member(connectionId, floor)]);
  if (options.seen) entries.push([subscribersKey(keys, options.seen.channel), options.seen.member]);
  // Without a record the user is unknown: `{prefix}wu:` names no set, so its SREM does nothing.
  const userSet = keys.userConnections(record?.identity.sub ?? '');
  const n = await REMOVE.run(
    deps.redis,
    [connectionKey(keys, connectionId), userSet, ...entries.map((e) => e[0])],
    [options.registeredBefore === undefined ? -1 : options.registeredBefore, connectionId, ...entries.map((e) => e[1])],
  );
  if (Number(n) === 1) await dropHolder(gatewayHolder(connectionId), deps, Date.now());
  return Number(n) === 1;
}

/** Parses a set member `{connectionId}|{floor}`; null for anything else. */
export function parseMember(raw: string): Subscriber | null {
  const bar = raw.lastIndexOf('|');
  if (bar <= 0) return null;
  const floor = Number(raw.slice(bar + 1));
  if (!Number.isFinite(floor)) return null;
  return { connectionId: raw.slice(0, bar), floor, member: raw };
}

/**
 * The channel's subscribers, one SSCAN page at a time (`pageSize` is a COUNT hint). The next page
 * is requested while the caller works on the current one. SSCAN may return a member twice when the
 * set is resized during the scan; callers that must deliver once deduplicate by connection id.
 */
export async function* subscriberPages(channel: string, deps: Pick<ConnectionDeps, 'redis' | 'config'>, pageSize = 500): AsyncGenerator<Subscriber[]> {
  const key = subscribersKey(new Keys(deps.config.keyPrefix), channel);
  // A prefetched page may be abandoned when the caller stops early: never leave its rejection unhandled.
  const scan = (cursor: string) => {
    const p = deps.redis.sscan(key, cursor, 'COUNT', pageSize);
    p.catch(() => undefined);
    return p;
  };
  let next = scan('0');
  for (;;) {
    const [cursor, raw] = await next;
    if (cursor !== '0') next = scan(cursor);
    const page: Subscriber[] = [];
    for (const r of raw) {
      const s = parseMember(r);
      if (s) page.push(s);
    }
    if (page.length) yield page;
    if (cursor === '0') return;
  }
}
