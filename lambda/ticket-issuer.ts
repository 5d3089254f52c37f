import { RealtimeError } from '../core/errors';
import type { Identity } from '../core/identity';
import { issueTicket } from '../core/tickets';
import { callerIdentity, errorResult, json, jsonBody, type HttpEvent, type HttpResult } from './shared/http';
import { getRuntime, logger } from './shared/runtime';

const SUB_PATTERN = /^[A-Za-z0-9_.\-=@|:]{1,128}$/;

/**
 * `POST /tickets` `{"channels": [...], "transport"?: "sse"|"ws"}` → `201 {ticket, expiresAt, sseUrl, wsUrl}`.
 * The user is the JWT `sub`; a trusted backend (IAM) names the user in `"sub"`.
 */
export async function handler(event: HttpEvent): Promise<HttpResult> {
  try {
    const body = jsonBody(event);
    let identity: Identity = callerIdentity(event);
    if (identity.kind === 'server') {
      if (typeof body.sub !== 'string' || !SUB_PATTERN.test(body.sub)) {
        throw new RealtimeError('bad_request', 'A backend issuing a ticket names the user in "sub" (1-128 chars).');
      }
      identity = { kind: 'user', sub: body.sub };
    } else if (identity.kind === 'anonymous') {
      throw new RealtimeError('unauthorized', 'Sign the request: tickets are issued to authenticated callers only.');
    }
    const { config, redis } = await getRuntime();
    const t = await issueTicket({ identity, channels: body.channels, transport: body.transport }, { redis, config });
    const query = `channels=${encodeURIComponent(t.channels.join(','))}&ticket=${t.ticket}`;
    const sseBase = process.env.SSE_URL;
    const wsBase = process.env.WS_URL;
    logger.info('ticket issued', { sub: identity.sub, channels: t.channels.length, transport: t.transport });
    return json(201, {
      ticket: t.ticket,
      expiresAt: t.expiresAt,
      channels: t.channels,
      transport: t.transport,
      sseUrl: t.transport === 'sse' && sseBase ? `${sseBase}?${query}` : null,
      wsUrl: t.transport === 'ws' && wsBase ? `${wsBase}?ticket=${t.ticket}` : null,
    });
  } catch (err) {
    const res = errorResult(err);
    if (res.statusCode >= 500) logger.error('ticket issue failed', { error: err as Error });
    return res;
  }
}
