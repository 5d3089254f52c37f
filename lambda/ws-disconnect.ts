import { removeConnection } from '../core/connections';
import { getRuntime, logger } from './shared/runtime';
import type { WsEvent, WsResult } from './shared/ws';

/**
 * `$disconnect`: removes the connection from every channel it was in. Best effort: API Gateway does
 * not guarantee this event, so the fan-out also unregisters connections that answer 410, and every
 * entry expires a while after API Gateway's two-hour limit.
 */
export async function handler(event: WsEvent): Promise<WsResult> {
  const ctx = event.requestContext;
  try {
    const { config, redis } = await getRuntime();
    await removeConnection(ctx.connectionId, { redis, config });
    logger.info('disconnected', { connectionId: ctx.connectionId, status: ctx.disconnectStatusCode, reason: ctx.disconnectReason });
  } catch (err) {
    logger.warn('disconnect cleanup failed; the fan-out removes the connection on its first 410', { error: err as Error, connectionId: ctx.connectionId });
  }
  return { statusCode: 200 };
}
