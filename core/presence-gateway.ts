import type { ConnectionDeps } from './connections';
import { parseChannel, type ParsedChannel } from './channels';
import { GATEWAY_LEASE_MS, gatewayHolder } from './occupancy';
import { PRESENCE_GRACE_MS, presenceMode } from './presence';
import { RedisPresence } from './redis/presence';

/**
 * Presence of API Gateway WebSocket connections (docs/DESIGN.md, "Presence"): each connection is its own holder
 * (`gw:{connectionId}`, occupancy's name), one connection of its user on the channels it subscribes to. Its lease is
 * occupancy's gateway lease ({@link GATEWAY_LEASE_MS}: the connection's longest life, since nothing renews it yet): a
 * `$disconnect` ends it at once (its members leave after the grace); a lost `$disconnect` holds its members until the
 * lease ends and a sweep (any task's tick) takes them. Nothing is read or written for channels whose namespace has
 * presence off.
 */

const tracked = (channels: readonly string[], deps: ConnectionDeps): ParsedChannel[] =>
  channels.map((c) => parseChannel(c, deps.config.namespaces)).filter((c) => presenceMode(c) !== 'off');

const store = (deps: ConnectionDeps) => new RedisPresence(deps.redis, deps.config);
const nowOf = (deps: ConnectionDeps) => (deps.now ?? Date.now)();
const graceOf = (deps: ConnectionDeps) => deps.config.presenceGraceMs ?? PRESENCE_GRACE_MS;

/** The connection of `sub` joins the presence of `channels` (those with presence on), with the ticket's `info`. */
export async function gatewayJoin(connectionId: string, sub: string, channels: readonly string[], deps: ConnectionDeps, info?: object): Promise<void> {
  const list = tracked(channels, deps);
  if (!list.length) return;
  const presence = store(deps);
  const holder = gatewayHolder(connectionId);
  const now = nowOf(deps);
  await presence.lease(holder, now + GATEWAY_LEASE_MS);
  for (const c of list) await presence.join(c, { holder, connection: holder, sub, info }, now);
}

/** The connection leaves the presence of `channel` (an `unsubscribe`), after the grace. */
export async function gatewayLeave(connectionId: string, channel: string, deps: ConnectionDeps): Promise<void> {
  const [c] = tracked([channel], deps);
  if (!c) return;
  const holder = gatewayHolder(connectionId);
  await store(deps).leave(c, { holder, connection: holder }, nowOf(deps), graceOf(deps));
}

/** The connection is gone (`$disconnect`): it leaves every channel's presence, after the grace. */
export async function gatewayEnd(connectionId: string, deps: ConnectionDeps): Promise<void> {
  if (!Object.values(deps.config.namespaces).some((ns) => (ns.presence ?? 'off') !== 'off')) return;
  await store(deps).endHolder(gatewayHolder(connectionId), nowOf(deps), graceOf(deps));
}
