import { disconnectSession } from '../../core/ws-session';
import { wsDisconnectHandler } from '../shared/handler';
import type { LambdaRuntime } from '../shared/runtime';
import type { WsEvent, WsResult } from '../shared/ws';

/**
 * `$disconnect`: removes the connection from every channel it was in. Best effort: API Gateway does
 * not guarantee this event, so the fan-out also unregisters connections that answer 410, and every
 * entry expires a while after API Gateway's two-hour limit.
 */
export function createWsDisconnect(runtime: LambdaRuntime): (event: WsEvent) => Promise<WsResult> {
  return wsDisconnectHandler(runtime, 'disconnect', async (event) => {
    const ctx = event.requestContext;
    await disconnectSession(ctx.connectionId, await runtime.clients());
    runtime.logger.info('disconnected', { connectionId: ctx.connectionId, status: ctx.disconnectStatusCode, reason: ctx.disconnectReason });
    return { statusCode: 200 };
  });
}
