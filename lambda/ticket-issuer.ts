import { RealtimeError } from '../core/errors';
import { SUB_PATTERN, type Identity } from '../core/identity';
import { issueTicket } from '../core/tickets';
import { callerIdentity, callerNotAfter, errorResult, json, jsonBody, type HttpEvent, type HttpResult } from './shared/http';
import { getRuntime, logger } from './shared/runtime';

/**
 * `POST /tickets` `{"channels": [...], "transport"?: "sse"|"ws"}` → `201 {ticket, expiresAt, sseUrl, wsUrl}`.
 * The user is the JWT `sub` (sessions from the ticket end no later than the JWT's `exp`); a trusted
 * backend (IAM) names the user in `"sub"`, and only its tickets may name channels of `granted`
 * namespaces (it checked membership first).
 */
export async function handler(event: HttpEvent): Promise<HttpResult> {
  try {
    const body = jsonBody(event);
    let identity: Identity = callerIdentity(event);
    const byBackend = identity.kind === 'server';
    if (identity.kind === 'server') {
      if (typeof body.sub !== 'string' || !SUB_PATTERN.test(body.sub)) {
        throw new RealtimeError('bad_request', 'A backend issuing a ticket names the user in "sub" (1-128 chars).');
      }
      identity = { kind: 'user', sub: body.sub };
    } else if (identity.kind === 'anonymous') {
      throw new RealtimeError('unauthorized', 'Sign the request: tickets are issued to authenticated callers only.');
    }
    const { config, redis } = await getRuntime();
    const notAfter = byBackend ? undefined : callerNotAfter(event);
    const t = await issueTicket({ identity, channels: body.channels, transport: body.transport, byBackend, notAfter }, { redis, config });
    const query = `channels=${encodeURIComponent(t.channels.join(','))}&ticket=${t.ticket}`;
    const sseBase = process.env.SSE_URL;
    const wsBase = process.env.WS_URL;
    logger.info('ticket issued', { sub: identity.sub, channels: t.channels.length, transport: t.transport, byBackend });
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
