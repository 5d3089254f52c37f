import { RealtimeError } from '../../core/errors';
import { connectSession } from '../../core/ws-session';
import { wsConnectHandler } from '../shared/handler';
import type { LambdaRuntime } from '../shared/runtime';
import type { WsEvent, WsResult } from '../shared/ws';

/** The presence info the authorizer passed (JSON text of an object), or none. */
function infoOf(text: string | undefined): object | undefined {
  if (!text) return undefined;
  try {
    const v = JSON.parse(text) as unknown;
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/**
 * `$connect` (after the ticket authorizer allowed it): registers the connection with its identity
 * and grant, subscribed to the ticket's channels. Any non-200 answer rejects the upgrade. Nothing
 * can be posted to the connection yet (API Gateway answers 410 until `$connect` returns), so the
 * client learns the cursor of these subscriptions from its own `subscribe` frames if it needs one.
 */
export function createWsConnect(runtime: LambdaRuntime): (event: WsEvent) => Promise<WsResult> {
  return wsConnectHandler(runtime, 'connect', async (event) => {
    const ctx = event.requestContext;
    const sub = ctx.authorizer?.sub;
    if (typeof sub !== 'string' || sub === '') throw new RealtimeError('unauthorized', 'Connect with ?ticket= from POST /tickets.');
    const { config, redis } = await runtime.clients();
    const epoch = Number(ctx.authorizer?.epoch ?? 0);
    const channels = await connectSession(
      ctx.connectionId,
      {
        sub,
        channels: (ctx.authorizer?.channels ?? '').split(',').filter((c) => c.length > 0),
        byBackend: ctx.authorizer?.byBackend === true || ctx.authorizer?.byBackend === 'true',
        epoch: Number.isFinite(epoch) ? epoch : 0,
        info: infoOf(ctx.authorizer?.info),
      },
      { redis, config },
    );
    runtime.logger.info('connected', { connectionId: ctx.connectionId, sub, channels: channels.length });
    return { statusCode: 200 };
  });
}
