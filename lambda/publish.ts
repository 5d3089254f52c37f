import { RealtimeError } from '../core/errors';
import { publish } from '../core/events';
import { callerIdentity, errorResult, json, jsonBody, type HttpEvent, type HttpResult } from './shared/http';
import { getRuntime, logger } from './shared/runtime';

/**
 * `POST /publish` `{"channel","type","data","idempotencyKey"?}` → `202 {"id"}`.
 * IAM-signed backends may publish anywhere; users only where their namespace allows.
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
    return json(202, { id: result.id, duplicate: result.duplicate });
  } catch (err) {
    const res = errorResult(err);
    if (res.statusCode >= 500) logger.error('publish failed', { error: err as Error });
    return res;
  }
}
