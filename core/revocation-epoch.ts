import type { CoreConfig } from './config';
import { RealtimeError } from './errors';
import { Keys } from './redis/keys';
import type { RedisLike } from './redis/client';

/**
 * The read side of revocation (core/revocation.ts): a user's epoch and the check of a ticket's or cookie's epoch
 * against it. Apart from `revokeUser` so the paths that only check (the ticket issuer, the `$connect` authorizer) do not
 * bundle the connection registry and its scripts that revoking needs. `revocation.ts` re-exports these.
 */

/** The user's current epoch (0 when never revoked, or long ago). */
export async function currentEpoch(sub: string, deps: { readonly redis: RedisLike; readonly config: CoreConfig }): Promise<number> {
  return parseEpoch(await deps.redis.get(new Keys(deps.config.keyPrefix).revocation(sub)));
}

/** The epoch stored in a revocation key (0 when none or unreadable). */
export function parseEpoch(raw: string | null | undefined): number {
  const n = raw === null || raw === undefined ? 0 : Number(raw);
  return Number.isFinite(n) ? n : 0;
}

/** Throws 401 when `epoch` (from a ticket or cookie) predates the user's latest revocation. */
export function assertNotRevoked(epoch: number, current: number): void {
  if (epoch < current) {
    throw new RealtimeError('unauthorized', "This user's sessions were revoked; get a new ticket from POST /tickets.");
  }
}
