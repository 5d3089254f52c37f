import type { ChannelGrant } from './channels';
import { CORE_SETTINGS } from '../contract/settings';
import { type CoreConfig } from './config';
import { RealtimeError } from './errors';
import type { Identity } from './identity';
import { Keys } from './redis/keys';
import type { RedisLike } from './redis/client';
import { CHANNEL_JOIN, RECORD_CLOSE, RECORD_OPEN, RECORD_SUBSCRIBE, RECORD_UNSUBSCRIBE, USER_ADMIT } from './redis/scripts';
import { acquire, dropHolder, gatewayHolder, GATEWAY_LEASE_MS, release } from './occupancy';

/**
 * The registry of API Gateway WebSocket connections, in Redis.
 *
 * - `{prefix}wc:{connectionId}`: a hash with the identity (`s`), the grant (`g`, JSON list of the
 *   ticket's channels, or `{"c": [...], "b": true}` when a backend asked for the ticket), the
 *   registration time (`a`, epoch ms) and one field `c:{channel}` per subscription whose value is
 *   the subscription's floor.
 * - `{prefix}wsub:{{channel}}`: a set of members `{connectionId}|{floor}`, read in pages by the fan-out, tagged with
 *   the channel (it lives in the channel's slot).
 * - `{prefix}wu:{sub}`: a set of the user's connection ids, to close them when the user is revoked.
 *
 * The floor is the channel's position (its last id, see DESIGN "Positions per channel") at the moment of subscribing,
 * taken in the same atomic step as the SADD, in the channel's slot (`CHANNEL_JOIN`): every event of the channel with a
 * higher id was published after the subscription existed, so the fan-out delivers it; every event up to the floor is
 * skipped by the fan-out and delivered by the replay of a `since` subscribe instead. That is what makes `since` free of
 * both gaps and duplicates when a publish races a subscribe.
 *
 * Every script touches one slot (the user's set, the record, or one channel's keys), so the registry runs on a Redis
 * Cluster; a change that spans them is a few steps in an order that leaves nothing wrong behind when it stops half-way:
 * - register: the user's set (the cap), the record (with its registration time, which keeps a fan-out's 410 from
 *   removing a connection still inside `$connect`), each channel's set, then the floors in the record;
 * - subscribe: the channel's set, then the record (a refused or concurrent one removes its member again);
 * - unsubscribe: the channel's set, then the record's field (a subscribe in between finds the field and adds the
 *   member back);
 * - remove: the record (read and deleted at once), then the channels' sets and the user's set. A member left behind
 *   by a step that did not run is met by a fan-out, answered 410, and removed then (`RemoveOptions.seen`).
 *
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
  hget(key: string, field: string): Promise<string | null>;
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
  /** The presence `info` of the ticket (a backend's), kept for the channels it subscribes to later. */
  readonly info?: object;
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
  let info: object | undefined;
  try {
    let g = JSON.parse(h.g ?? '[]') as unknown;
    if (g !== null && typeof g === 'object' && !Array.isArray(g)) {
      byBackend = (g as { b?: unknown }).b === true;
      const i = (g as { i?: unknown }).i;
      if (i !== null && typeof i === 'object') info = i;
      g = (g as { c?: unknown }).c;
    }
    if (Array.isArray(g)) grant = g.filter((c): c is string => typeof c === 'string');
  } catch {
    // an unreadable grant grants nothing beyond public channels
  }
  return { connectionId, identity: { kind: 'user', sub: h.s }, grant, grantedByBackend: byBackend, registeredAt: Number(h.a ?? 0), subscriptions, info };
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
  input: { readonly sub: string; readonly grant: readonly string[]; readonly grantedByBackend?: boolean; readonly channels: readonly string[]; readonly info?: object },
  deps: ConnectionDeps,
): Promise<ReadonlyMap<string, number>> {
  const keys = new Keys(deps.config.keyPrefix);
  const now = (deps.now ?? Date.now)();
  // The grant's object form also carries the ticket's presence info (`i`).
  const grant = input.grantedByBackend || input.info ? { c: input.grant, ...(input.grantedByBackend ? { b: true } : {}), ...(input.info ? { i: input.info } : {}) } : input.grant;
  const max = deps.config.userConnections ?? CORE_SETTINGS.userConnections.default;
  const userSet = keys.userConnections(input.sub);
  if (max > 0 && (await deps.redis.scard(userSet)) >= max) await dropExpired(userSet, keys, deps.redis);
  if (Number(await USER_ADMIT.run(deps.redis, [userSet], [connectionId, max, CONNECTION_TTL_SECONDS])) === -1) {
    throw new RealtimeError('rate_limited', `At most ${max} WebSocket connections per user at once; close one, or retry later.`);
  }
  const record = connectionKey(keys, connectionId);
  await RECORD_OPEN.run(deps.redis, [record], [input.sub, JSON.stringify(grant), now, CONNECTION_TTL_SECONDS]);
  const floors = new Map<string, number>();
  try {
    const joined = await Promise.all(input.channels.map((c) => joinChannel(connectionId, c, '', keys, deps.redis)));
    input.channels.forEach((c, i) => floors.set(c, joined[i]));
    if (input.channels.length) {
      await RECORD_SUBSCRIBE.run(deps.redis, [record], [CONNECTION_TTL_SECONDS, 0, ...input.channels.flatMap((c) => [c, String(floors.get(c))])]);
    }
  } catch (err) {
    // Half-registered: take back what was written (best effort; what stays expires, or is removed by a fan-out's 410).
    await removeConnection(connectionId, deps, { seenMembers: [...floors].map(([channel, floor]) => ({ channel, member: member(connectionId, floor) })) }).catch(() => undefined);
    throw err;
  }
  // Occupancy (backend events): the connection holds its channels until `$disconnect`, at most API Gateway's 2 hours.
  await acquire(gatewayHolder(connectionId), input.channels, deps, now, now + GATEWAY_LEASE_MS);
  return floors;
}

/** The keys `CHANNEL_JOIN` reads a channel's position from (as CHANNEL_POSITION names them). */
function positionKeys(keys: Keys, channel: string): string[] {
  return [keys.history(channel), keys.horizon(channel), keys.gap(channel), keys.lastId(channel), keys.base(channel), keys.lostRanges(channel)];
}

/** Adds the connection to the channel's set with `floor`, or with the channel's position when `floor` is ''; returns the floor. */
async function joinChannel(connectionId: string, channel: string, floor: string, keys: Keys, redis: RedisLike): Promise<number> {
  return Number(await CHANNEL_JOIN.run(redis, [subscribersKey(keys, channel), ...positionKeys(keys, channel)], [connectionId, floor, CONNECTION_TTL_SECONDS]));
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
 * checks the grant first. `known`: the connection's record as the caller just read it (saves a read).
 */
export async function addSubscription(connectionId: string, channel: string, deps: ConnectionDeps, known?: ConnectionRecord | null): Promise<SubscribeOutcome> {
  const keys = new Keys(deps.config.keyPrefix);
  const max = deps.config.maxChannelsPerConnection;
  const conn = known === undefined ? await getConnection(connectionId, deps) : known;
  const unknown = () => new RealtimeError('unauthorized', 'This connection is no longer registered; reconnect with a new ticket.');
  const tooMany = () => new RealtimeError('too_many_channels', `At most ${max} channels per connection; unsubscribe from one first.`);
  if (!conn) throw unknown();
  const kept = conn.subscriptions.get(channel);
  if (kept === undefined && conn.subscriptions.size >= max) throw tooMany();
  // The channel's set first: the subscription is live (its floor taken with the member) before the record says so.
  const floor = await joinChannel(connectionId, channel, kept === undefined ? '' : String(kept), keys, deps.redis);
  const r = (await RECORD_SUBSCRIBE.run(deps.redis, [connectionKey(keys, connectionId)], [CONNECTION_TTL_SECONDS, max, channel, String(floor)])) as -1 | [number, string];
  const status = r === -1 ? -1 : Number(r[0]);
  const recorded = r === -1 ? floor : Number(r[1]);
  // Unknown meanwhile, refused, or a concurrent subscribe recorded another floor: this member goes again.
  if (recorded !== floor || status < 0) await deps.redis.srem(subscribersKey(keys, channel), member(connectionId, floor));
  if (status === -1) throw unknown();
  if (status === -2) throw tooMany();
  if (status === 0) await acquire(gatewayHolder(connectionId), [channel], deps, (deps.now ?? Date.now)());
  return { floor: recorded, added: status === 0 };
}

/** Removes a subscription; false when there was none. */
export async function removeSubscription(connectionId: string, channel: string, deps: Pick<ConnectionDeps, 'redis' | 'config'>): Promise<boolean> {
  const keys = new Keys(deps.config.keyPrefix);
  const record = connectionKey(keys, connectionId);
  const floor = await deps.redis.hget(record, `c:${channel}`);
  if (floor === null) return false;
  // The member first: a subscribe meanwhile finds the field and adds it back, so the set never lacks a recorded one.
  await Promise.all([subscribersKey(keys, channel), keys.legacyChannelSubscribers(channel)].map((k) => deps.redis.srem(k, member(connectionId, floor))));
  const n = await RECORD_UNSUBSCRIBE.run(deps.redis, [record], [channel, floor]);
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
  /** More such members (a registration taken back half-way). */
  readonly seenMembers?: readonly { readonly channel: string; readonly member: string }[];
}

/**
 * Removes a connection from every channel it was in and deletes its record. Returns false when a
 * young connection was kept (see {@link RemoveOptions.registeredBefore}).
 */
export async function removeConnection(connectionId: string, deps: Pick<ConnectionDeps, 'redis' | 'config'>, options: RemoveOptions = {}): Promise<boolean> {
  const keys = new Keys(deps.config.keyPrefix);
  const r = (await RECORD_CLOSE.run(deps.redis, [connectionKey(keys, connectionId)], [options.registeredBefore === undefined ? -1 : options.registeredBefore])) as (number | string)[];
  if (Number(r[0]) !== 1) return false;
  const members = new Map<string, Set<string>>();
  const add = (channel: string, m: string) => members.set(channel, (members.get(channel) ?? new Set()).add(m));
  for (let i = 2; i + 1 < r.length; i += 2) add(String(r[i]), member(connectionId, String(r[i + 1])));
  for (const s of [...(options.seen ? [options.seen] : []), ...(options.seenMembers ?? [])]) add(s.channel, s.member);
  // One single-key SREM per channel (each in its channel's slot), and the user's set (unknown without a record).
  await Promise.all([
    ...[...members].flatMap(([channel, ms]) => [deps.redis.srem(subscribersKey(keys, channel), ...ms), deps.redis.srem(keys.legacyChannelSubscribers(channel), ...ms)]),
    ...(r[1] === undefined ? [] : [deps.redis.srem(keys.userConnections(String(r[1])), connectionId)]),
  ]);
  await dropHolder(gatewayHolder(connectionId), deps, Date.now());
  return true;
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
 * How many connections a channel's subscriber sets hold: the tagged one and the untagged one of before the upgrade
 * (`Keys.legacyChannelSubscribers`), read together.
 */
export async function countSubscribers(channel: string, deps: Pick<ConnectionDeps, 'redis' | 'config'>): Promise<number> {
  const keys = new Keys(deps.config.keyPrefix);
  const [n, legacy] = await Promise.all([deps.redis.scard(subscribersKey(keys, channel)), deps.redis.scard(keys.legacyChannelSubscribers(channel))]);
  return n + legacy;
}

/**
 * The channel's subscribers, one SSCAN page at a time (`pageSize` is a COUNT hint), from its tagged set and then from
 * the untagged set of before the upgrade (connections registered then; empty once they are gone). The next page
 * is requested while the caller works on the current one. SSCAN may return a member twice when the
 * set is resized during the scan; callers that must deliver once deduplicate by connection id.
 */
export async function* subscriberPages(channel: string, deps: Pick<ConnectionDeps, 'redis' | 'config'>, pageSize = 500): AsyncGenerator<Subscriber[]> {
  const keys = new Keys(deps.config.keyPrefix);
  for (const key of [subscribersKey(keys, channel), keys.legacyChannelSubscribers(channel)]) yield* setPages(key, deps.redis, pageSize);
}

async function* setPages(key: string, redis: ConnectionsRedis, pageSize: number): AsyncGenerator<Subscriber[]> {
  // A prefetched page may be abandoned when the caller stops early: never leave its rejection unhandled.
  const scan = (cursor: string) => {
    const p = redis.sscan(key, cursor, 'COUNT', pageSize);
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
