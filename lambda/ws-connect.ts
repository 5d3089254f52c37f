import { maySubscribe, parseChannel, type ChannelGrant } from '../core/channels';
import { registerConnection, removeConnection } from '../core/connections';
import { errorBody, RealtimeError, toRealtimeError } from '../core/errors';
import { assertNotRevoked, currentEpoch } from '../core/revocation';
import { getRuntime, logger } from './shared/runtime';
import type { WsEvent, WsResult } from './shared/ws';

/**
 * `$connect` (after the ticket authorizer allowed it): registers the connection with its identity
 * and grant, subscribed to the ticket's channels. Any non-200 answer rejects the upgrade. Nothing
 * can be posted to the connection yet (API Gateway answers 410 until `$connect` returns), so the
 * client learns the cursor of these subscriptions from its own `subscribe` frames if it needs one.
 */
export async function handler(event: WsEvent): Promise<WsResult> {
  const ctx = event.requestContext;
  try {
    const sub = ctx.authorizer?.sub;
    if (typeof sub !== 'string' || sub === '') throw new RealtimeError('unauthorized', 'Connect with ?ticket= from POST /tickets.');
    const { config, redis } = await getRuntime();
    const channels = (ctx.authorizer?.channels ?? '').split(',').filter((c) => c.length > 0);
    const byBackend = ctx.authorizer?.byBackend === true || ctx.authorizer?.byBackend === 'true';
    const grant: ChannelGrant = { channels, byBackend };
    // The namespace policy may have changed since the ticket was issued: subscribe only what it still allows.
    const identity = { kind: 'user', sub } as const;
    const allowed = channels.filter((c) => {
      try {
        return maySubscribe(identity, parseChannel(c, config.namespaces), grant);
      } catch {
        return false;
      }
    });
    await registerConnection(ctx.connectionId, { sub, grant: channels, grantedByBackend: byBackend, channels: allowed }, { redis, config });
    // A revocation that ran between the authorizer and this registration did not see this connection:
    // check again now that it is registered (a later revocation finds it in the user's set).
    const epoch = Number(ctx.authorizer?.epoch ?? 0);
    try {
      assertNotRevoked(Number.isFinite(epoch) ? epoch : 0, await currentEpoch(sub, { redis, config }));
    } catch (err) {
      await removeConnection(ctx.connectionId, { redis, config });
      throw err;
    }
    logger.info('connected', { connectionId: ctx.connectionId, sub, channels: allowed.length });
    return { statusCode: 200 };
  } catch (err) {
    const e = toRealtimeError(err);
    if (e.status >= 500) logger.error('connect failed', { error: err as Error, connectionId: ctx.connectionId });
    return { statusCode: e.status, body: errorBody(e) };
  }
}
