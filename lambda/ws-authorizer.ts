import { toRealtimeError } from '../core/errors';
import { redeemTicket } from '../core/tickets';
import { getRuntime, logger } from './shared/runtime';
import type { WsAuthorizerContext, WsAuthorizerEvent, WsAuthorizerResult } from './shared/ws';

function policy(principalId: string, effect: 'Allow' | 'Deny', resource: string, context?: WsAuthorizerContext): WsAuthorizerResult {
  return {
    principalId,
    policyDocument: { Version: '2012-10-17', Statement: [{ Action: 'execute-api:Invoke', Effect: effect, Resource: resource }] },
    ...(context ? { context: { ...context } } : {}),
  };
}

/**
 * REQUEST authorizer of `$connect` (identity source `route.request.querystring.ticket`): redeems the
 * single-use `ws` ticket and allows the connection with the user and the ticket's channels in the
 * context, which API Gateway hands to `$connect` and every later route. Anything else is denied
 * (403 on the upgrade); it never throws. API Gateway does not cache WebSocket authorizer results,
 * so every connect redeems.
 */
export async function handler(event: WsAuthorizerEvent): Promise<WsAuthorizerResult> {
  try {
    const { config, redis } = await getRuntime();
    const grant = await redeemTicket(event.queryStringParameters?.ticket, 'ws', { redis, config });
    return policy(grant.sub, 'Allow', event.methodArn, { sub: grant.sub, channels: grant.channels.join(','), byBackend: grant.byBackend, epoch: grant.epoch });
  } catch (err) {
    const e = toRealtimeError(err);
    if (e.status >= 500) logger.error('authorizer failed', { error: err as Error });
    else logger.info('connect denied', { code: e.code, connectionId: event.requestContext.connectionId });
    return policy('anonymous', 'Deny', event.methodArn);
  }
}
