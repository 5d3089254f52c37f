import { RealtimeError } from '../core/errors';
import { publish } from '../core/events';
import { fanout } from '../core/fanout';
import { callerIdentity, errorResult, json, jsonBody, type HttpEvent, type HttpResult } from './shared/http';
import { getRuntime, logger } from './shared/runtime';
import { deliveryDeps, managementClient } from './shared/ws';

/**
 * `POST /publish` `{"channel","type","data","idempotencyKey"?}` → `202 {"id"}`.
 * IAM-signed backends may publish anywhere; users only where their namespace allows. After the
 * event is stored and published, it is fanned out to the channel's WebSocket connections
 * (when WS_MANAGEMENT_ENDPOINT is set) before the answer.
 */
export async function handler(event: HttpEvent): Promise<HttpResult> {
  try {
    const identity = callerIdentity(event);
    if (identity.kind === 'anonymous') throw new RealtimeError('unauthorized', 'Sign the request (IAM SigV4) to publish.');
    const body = jsonBody(event);
    const { config, redis } = await getRuntime();
    const result = await publish(
      { channel: body.channel, type: body.type, data: body.data, idempotencyKey: body.idempotencyKey },
      identity,
      { redis, config },
    );
    logger.info('published', { channel: result.channel, id: result.id, duplicate: result.duplicate });
    // SSE tasks got the event from Redis pub/sub; WebSocket connections get it through the management
    // API, once: an idempotent retry (duplicate) was fanned out by the first publish.
    const client = managementClient();
    if (client && !result.duplicate && result.envelope) {
      try {
        const f = await fanout(result.channel, result.envelope, deliveryDeps({ config, redis }, client));
        logger.info('fanned out', { channel: result.channel, id: result.id, ...f });
      } catch (err) {
        logger.error('fan-out failed; SSE subscribers still received the event', { error: err as Error, channel: result.channel, id: result.id });
      }
    }
    return json(202, { id: result.id, duplicate: result.duplicate });
  } catch (err) {
    const res = errorResult(err);
    if (res.statusCode >= 500) logger.error('publish failed', { error: err as Error });
    return res;
  }
}
