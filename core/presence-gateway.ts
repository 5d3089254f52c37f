import type { ConnectionDeps } from './connections';
import { parseChannel, type ParsedChannel } from './channels';
import type { Namespaces } from './config';
import { gatewayHolder, GATEWAY_HOLDER_PREFIX } from './occupancy';
import { PRESENCE_GRACE_MS, presenceMode } from './presence';
import type { Fanout, UseCaseLogger } from './publishing';
import { RedisPresence } from './redis/presence';

/**
 * Presence of API Gateway WebSocket connections (docs/DESIGN.md, "Presence"): each connection is its own holder
 * (`gw:{connectionId}`, occupancy's name), one connection of its user on the channels it subscribes to. Its lease is
 * short ({@link GATEWAY_PRESENCE_LEASE_MS}) and every frame of the connection renews it (the SDK sends one at least
 * every 9 minutes, and after 20 s of silence); a `$disconnect` ends it at once (its members leave after the grace).
 * `$disconnect` is best-effort, so a scheduled sweeper ({@link sweepGatewayPresence}, lambda/presence-sweeper.ts) asks
 * API Gateway about every connection whose lease ended (GetConnection): `410 Gone` ends it as `$disconnect` would have,
 * an open connection gets a new lease. The tasks' sweeps never end a gateway lease (it lives in its own set).
 * Nothing is read or written for channels whose namespace has presence off.
 */

/**
 * Milliseconds a gateway connection's presence lease runs after its last frame (or its last check by the sweeper). A
 * connection that sends nothing for that long costs one GetConnection per lease; a lost `$disconnect` holds its
 * member at most this long plus the sweeper's period, the grace and a settle (DESIGN, "Presence": the bound).
 */
export const GATEWAY_PRESENCE_LEASE_MS = 120_000;

/** GetConnection calls of one sweep in flight at once. */
export const GATEWAY_SWEEP_CONCURRENCY = 16;
/** Holders read per page of a sweep. */
const GATEWAY_SWEEP_PAGE = 200;

/** Where presence events go besides Redis, and where failures are logged: the WebSocket use-cases' deps. */
export interface PresenceDelivery {
  /** The WebSocket fan-out to API Gateway connections (see `RedisPresenceOptions.fanout`). Defaults to none. */
  readonly fanout?: Fanout;
  readonly logger?: Pick<UseCaseLogger, 'warn'>;
}

type GatewayDeps = ConnectionDeps & PresenceDelivery;

const tracked = (channels: readonly string[], deps: ConnectionDeps): ParsedChannel[] =>
  channels.map((c) => parseChannel(c, deps.config.namespaces)).filter((c) => presenceMode(c) !== 'off');

const store = (deps: GatewayDeps) => new RedisPresence(deps.redis, deps.config, { fanout: deps.fanout, logger: deps.logger });
const nowOf = (deps: ConnectionDeps) => (deps.now ?? Date.now)();
const graceOf = (deps: ConnectionDeps) => deps.config.presenceGraceMs ?? PRESENCE_GRACE_MS;

/** True when some namespace keeps presence: otherwise the gateway path reads and writes nothing for it. */
export const presenceOn = (namespaces: Namespaces): boolean => Object.values(namespaces).some((ns) => (ns.presence ?? 'off') !== 'off');

/** The connection of `sub` joins the presence of `channels` (those with presence on), with the ticket's `info`. */
export async function gatewayJoin(connectionId: string, sub: string, channels: readonly string[], deps: GatewayDeps, info?: object): Promise<void> {
  const list = tracked(channels, deps);
  if (!list.length) return;
  const presence = store(deps);
  const holder = gatewayHolder(connectionId);
  const now = nowOf(deps);
  await presence.lease(holder, now + GATEWAY_PRESENCE_LEASE_MS);
  for (const c of list) await presence.join(c, { holder, connection: holder, sub, info }, now);
}

/** The connection leaves the presence of `channel` (an `unsubscribe`), after the grace. */
export async function gatewayLeave(connectionId: string, channel: string, deps: GatewayDeps): Promise<void> {
  const [c] = tracked([channel], deps);
  if (!c) return;
  const holder = gatewayHolder(connectionId);
  await store(deps).leave(c, { holder, connection: holder }, nowOf(deps), graceOf(deps));
}

/** A frame of the connection arrived: its lease, if it has one, runs {@link GATEWAY_PRESENCE_LEASE_MS} from now. */
export async function gatewayRenew(connectionId: string, deps: ConnectionDeps): Promise<void> {
  if (!presenceOn(deps.config.namespaces)) return;
  await new RedisPresence(deps.redis, deps.config).renew(gatewayHolder(connectionId), nowOf(deps) + GATEWAY_PRESENCE_LEASE_MS);
}

/** The connection is gone (`$disconnect`, or GetConnection answered 410): it leaves every channel's presence, after the grace. */
export async function gatewayEnd(connectionId: string, deps: GatewayDeps): Promise<void> {
  if (!presenceOn(deps.config.namespaces)) return;
  await store(deps).endHolder(gatewayHolder(connectionId), nowOf(deps), graceOf(deps));
}

/** What API Gateway says of a connection (GetConnection): open (200), or gone (410). Anything else is thrown. */
export type GatewayConnectionState = 'open' | 'gone';

export interface GatewaySweepDeps extends GatewayDeps {
  /** GetConnection of the stage's management API (core/aws/management.ts `getConnection`). */
  readonly connectionState: (connectionId: string) => Promise<GatewayConnectionState>;
  /** Ends a gone connection as `$disconnect` would have (its registry entry and its presence). */
  readonly disconnect: (connectionId: string) => Promise<void>;
  /** Whether the sweep may go on (a Lambda stops before its timeout). Defaults to always. */
  readonly more?: () => boolean;
}

export interface GatewaySweepResult {
  /** Connections asked about (GetConnection). */
  readonly checked: number;
  /** Answered 410: ended, their members in grace. */
  readonly gone: number;
  /** Open: their lease renewed. */
  readonly open: number;
  /** Not decided (throttled, 5xx, network): left for the next sweep. */
  readonly failed: number;
}

/**
 * One sweep of the API Gateway connections whose presence lease ended before now (the scheduled sweeper's run): each is
 * asked about with GetConnection, {@link GATEWAY_SWEEP_CONCURRENCY} at a time; `410 Gone` ends it (`disconnect`: its
 * members go into grace, and leave at the next settle after it), an open one gets a new lease, one that could not be
 * decided keeps its ended lease and is asked again by the next sweep. Concurrent sweeps are harmless (ending and
 * renewing are idempotent; a renewal never brings back a lease that `$disconnect` or a sweep ended).
 */
export async function sweepGatewayPresence(deps: GatewaySweepDeps): Promise<GatewaySweepResult> {
  const presence = store(deps);
  const now = nowOf(deps);
  const counts = { checked: 0, gone: 0, open: 0, failed: 0 };
  for (;;) {
    if (deps.more && !deps.more()) break;
    // Decided holders leave the range (renewed or ended); the undecided ones stay at its head and are skipped.
    const holders = await presence.gatewayLeasesEnded(now, counts.failed, GATEWAY_SWEEP_PAGE);
    let next = 0;
    const worker = async () => {
      while (next < holders.length) {
        const holder = holders[next++];
        const connectionId = holder.slice(GATEWAY_HOLDER_PREFIX.length);
        counts.checked++;
        let state: GatewayConnectionState;
        try {
          state = await deps.connectionState(connectionId);
        } catch (err) {
          counts.failed++;
          deps.logger?.warn('presence sweeper: GetConnection failed; the connection is asked about again next time', { connectionId, error: err as Error });
          continue;
        }
        if (state === 'gone') {
          await deps.disconnect(connectionId);
          counts.gone++;
        } else {
          await presence.renew(holder, now + GATEWAY_PRESENCE_LEASE_MS);
          counts.open++;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(GATEWAY_SWEEP_CONCURRENCY, holders.length) }, worker));
    if (holders.length < GATEWAY_SWEEP_PAGE) break;
  }
  return counts;
}
