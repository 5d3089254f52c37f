import { maySubscribe, parseChannel } from '../core/channels';
import { registerConnection } from '../core/connections';
import { errorBody, RealtimeError, toRealtimeError } from '../core/errors';
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
    const grant = (ctx.authorizer?.channels ?? '').split(',').filter((c) => c.length > 0);
    // The namespace policy may have changed since the ticket was issued: subscribe only what it still allows.
    const identity = { kind: 'user', sub } as const;
    const channels = grant.filter((c) => {
      try {
        return maySubscribe(identity, parseChannel(c, config.namespaces));
      } catch {
        return false;
      }
    });
    await registerConnection(ctx.connectionId, { sub, grant, channels }, { redis, config });
    logger.info('connected', { connectionId: ctx.connectionId, sub, channels: channels.length });
    return { statusCode: 200 };
  } catch (err) {
    const e = toRealtimeError(err);
    if (e.status >= 500) logger.error('connect failed', { error: err as Error, connectionId: ctx.connectionId });
    return { statusCode: e.status, body: errorBody(e) };
  }
}
