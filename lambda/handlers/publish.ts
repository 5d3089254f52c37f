import { RealtimeError } from '../../core/errors';
import { publishAndFanout } from '../../core/publishing';
import { httpHandler } from '../shared/handler';
import { callerIdentity, json, jsonBody, type HttpEvent, type HttpResult } from '../shared/http';
import type { FanoutRuntime } from '../shared/fanout-runtime';

/**
 * `POST /publish` `{"channel","type","data","idempotencyKey"?}` → `202 {"id","duplicate"}`.
 * IAM-signed backends may publish anywhere; users only where their namespace allows. After the
 * event is stored and published (SSE tasks get it through Redis), it is fanned out to the channel's
 * WebSocket connections (with a management endpoint) before the answer.
 */
export function createPublishHandler(runtime: FanoutRuntime): (event: HttpEvent) => Promise<HttpResult> {
  return httpHandler(runtime, 'publish', async (event) => {
    const identity = callerIdentity(event, runtime.config.trustedPrincipals);
    if (identity.kind === 'anonymous') throw new RealtimeError('unauthorized', 'Sign the request (IAM SigV4) to publish.');
    const body = jsonBody(event);
    const result = await publishAndFanout(
      { channel: body.channel, type: body.type, data: body.data, idempotencyKey: body.idempotencyKey },
      identity,
      runtime.sessionDeps(await runtime.clients()),
    );
    return json(202, { id: result.id, duplicate: result.duplicate });
  });
}
