import { RealtimeError } from '../../core/errors';
import { isGone } from '../../core/fanout';
import { SUB_PATTERN, SUB_RULE } from '../../core/identity';
import { revokeUser } from '../../core/revocation';
import { httpHandler } from '../shared/handler';
import { callerIdentity, json, jsonBody, type HttpEvent, type HttpResult } from '../shared/http';
import type { FanoutRuntime } from '../shared/fanout-runtime';

/**
 * `POST /revoke` `{"sub"}` (IAM-signed backends only) → `202 {"sub","epoch"}`.
 * Every ticket and reconnect cookie of the user issued before now stops working (401), the user's
 * SSE streams and long polls end on every service instance, and the user's WebSocket connections
 * are closed (with a management endpoint). The user signs in again through POST /tickets.
 */
export function createRevokeHandler(runtime: FanoutRuntime): (event: HttpEvent) => Promise<HttpResult> {
  return httpHandler(runtime, 'revoke', async (event) => {
    const identity = callerIdentity(event, runtime.config.trustedPrincipals);
    if (identity.kind === 'anonymous') throw new RealtimeError('unauthorized', 'Sign the request (IAM SigV4) to revoke.');
    if (identity.kind !== 'server') throw new RealtimeError('forbidden', 'Only a backend (an IAM-signed request) may revoke sessions.');
    const body = jsonBody(event);
    if (typeof body.sub !== 'string' || !SUB_PATTERN.test(body.sub)) {
      throw new RealtimeError('bad_request', `Name the user whose sessions end in "sub" (${SUB_RULE}).`);
    }
    const { config, redis } = await runtime.clients();
    const client = runtime.postClient();
    const closeConnection = client
      ? async (connectionId: string) => {
          try {
            await client.deleteConnection(connectionId);
          } catch (err) {
            if (!isGone(err)) runtime.logger.warn('could not close a revoked connection; it is unregistered and gets nothing more', { error: err as Error, connectionId });
          }
        }
      : undefined;
    const r = await revokeUser(body.sub, { redis, config, closeConnection });
    runtime.logger.info('revoked', { sub: r.sub, epoch: r.epoch, by: identity.principal, connections: r.connections });
    return json(202, { sub: r.sub, epoch: r.epoch });
  });
}
