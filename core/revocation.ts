import type { CoreConfig } from './config';
import { removeConnection, type ConnectionsRedis } from './connections';
import { Keys } from './redis/keys';
import { REVOKE } from './redis/scripts';
import { userRevoked } from './backend-events';

/**
 * Per-user revocation. Each user has an epoch in `{prefix}rv:{sub}` (0 when never revoked). Tickets
 * take the current epoch when issued and reconnect cookies carry it on; a ticket or cookie whose
 * epoch is older than the user's current one is refused. Revoking moves the epoch forward, tells
 * every SSE service instance on `{prefix}ctl:revoke` (they end that user's streams and polls), and
 * closes the user's API Gateway WebSocket connections.
 *
 * The epoch is the Redis clock in milliseconds (or the previous epoch + 1 when that is not larger),
 * not a plain counter: the key then expires ({@link REVOCATION_TTL_SECONDS}, far beyond the longest
 * session) without ever letting an old cookie through, because a later revocation starts above every
 * epoch handed out before. A counter would restart at 1 after the key expired, below cookies issued
 * with a higher epoch.
 */

/** Seconds a user's epoch outlives its last revocation: 30 days, beyond SESSION_MAX_AGE_SECONDS' cap of 7. */
export const REVOCATION_TTL_SECONDS = 30 * 86400;

/** The revocation message on the control channel. */
export interface RevocationMessage {
  readonly sub: string;
  readonly epoch: number;
}

export { assertNotRevoked, currentEpoch, parseEpoch } from './revocation-epoch';

/** Parses a control-channel message; null for anything else. */
export function parseRevocation(message: string): RevocationMessage | null {
  try {
    const m = JSON.parse(message) as Partial<RevocationMessage>;
    if (typeof m.sub === 'string' && typeof m.epoch === 'number' && Number.isFinite(m.epoch)) return { sub: m.sub, epoch: m.epoch };
  } catch {
    // not ours
  }
  return null;
}

export interface RevokeDeps {
  readonly redis: ConnectionsRedis & { smembers(key: string): Promise<string[]> };
  readonly config: CoreConfig;
  /**
   * Closes one WebSocket connection (the management API's DeleteConnection; a gone connection is
   * not an error). Without it, connections are only unregistered.
   */
  readonly closeConnection?: (connectionId: string) => Promise<void>;
}

export interface RevokeResult {
  readonly sub: string;
  readonly epoch: number;
  /** WebSocket connections of the user that were unregistered (and closed, with a management API). */
  readonly connections: number;
}

/**
 * Revokes every session of `sub`: tickets and cookies issued before now stop working, open SSE
 * streams and polls end (through the control channel), WebSocket connections are unregistered (no
 * more fan-out, frames answered `unauthorized`) and closed.
 */
export async function revokeUser(sub: string, deps: RevokeDeps): Promise<RevokeResult> {
  const keys = new Keys(deps.config.keyPrefix);
  const epoch = Number(await REVOKE.run(deps.redis, [keys.revocation(sub)], [sub, keys.revokeControl, REVOCATION_TTL_SECONDS]));
  // Before the caller hears 202: a failure here fails the call, and the backend's retry revokes (and tells) again.
  await userRevoked(sub, epoch, deps);
  const ids = await deps.redis.smembers(keys.userConnections(sub));
  await Promise.all(
    ids.map(async (id) => {
      await removeConnection(id, deps);
      await deps.closeConnection?.(id);
    }),
  );
  return { sub, epoch, connections: ids.length };
}
