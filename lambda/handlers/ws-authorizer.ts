import { redeemTicket } from '../../core/tickets';
import { policy, wsAuthorizerHandler } from '../shared/handler';
import type { LambdaRuntime } from '../shared/runtime';
import type { WsAuthorizerEvent, WsAuthorizerResult } from '../shared/ws';

/**
 * REQUEST authorizer of `$connect` (identity source `route.request.querystring.ticket`): redeems the
 * single-use `ws` ticket and allows the connection with the user and the ticket's channels in the
 * context, which API Gateway hands to `$connect` and every later route. Anything else is denied
 * (403 on the upgrade); it never throws. API Gateway does not cache WebSocket authorizer results,
 * so every connect redeems.
 */
export function createWsAuthorizer(runtime: LambdaRuntime): (event: WsAuthorizerEvent) => Promise<WsAuthorizerResult> {
  return wsAuthorizerHandler(runtime, 'authorizer', async (event) => {
    const { config, redis } = await runtime.clients();
    const grant = await redeemTicket(event.queryStringParameters?.ticket, 'ws', { redis, config });
    const context = { sub: grant.sub, channels: grant.channels.join(','), byBackend: grant.byBackend, epoch: grant.epoch };
    // Context values are strings, numbers or booleans: the presence info goes as its JSON text.
    return policy(grant.sub, 'Allow', event.methodArn, grant.info ? { ...context, info: JSON.stringify(grant.info) } : context);
  });
}
