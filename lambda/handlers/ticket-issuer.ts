import { RealtimeError } from '../../core/errors';
import { SUB_PATTERN, SUB_RULE, type Identity } from '../../core/identity';
import { issueTicket } from '../../core/ticket-issue';
import { httpHandler } from '../shared/handler';
import { callerIdentity, callerNotAfter, json, jsonBody, type HttpEvent, type HttpResult } from '../shared/http';
import type { LambdaRuntime } from '../shared/runtime';

/**
 * `POST /tickets` `{"channels": [...], "transport"?: "sse"|"ws", "info"?: {...}}` → `201 {ticket, expiresAt, sseUrl, wsUrl}`.
 * The user is the JWT `sub` (sessions from the ticket end no later than the JWT's `exp`); a trusted
 * backend (IAM) names the user in `"sub"`, and only its tickets may name channels of `granted`
 * namespaces (it checked membership first) and attach the user's presence `info` (e.g. `{"name":"Ann"}`).
 */
export function createTicketIssuer(runtime: LambdaRuntime): (event: HttpEvent) => Promise<HttpResult> {
  const { sseUrl, wsUrl, trustedPrincipals } = runtime.config;
  return httpHandler(runtime, 'ticket issue', async (event) => {
    const body = jsonBody(event);
    let identity: Identity = callerIdentity(event, trustedPrincipals);
    const byBackend = identity.kind === 'server';
    if (identity.kind === 'server') {
      if (typeof body.sub !== 'string' || !SUB_PATTERN.test(body.sub)) {
        throw new RealtimeError('bad_request', `A backend issuing a ticket names the user in "sub" (${SUB_RULE}).`);
      }
      identity = { kind: 'user', sub: body.sub };
    } else if (identity.kind === 'anonymous') {
      throw new RealtimeError('unauthorized', 'Sign the request: tickets are issued to authenticated callers only.');
    }
    const { config, redis } = await runtime.clients();
    const notAfter = byBackend ? undefined : callerNotAfter(event);
    const t = await issueTicket({ identity, channels: body.channels, transport: body.transport, byBackend, notAfter, info: body.info }, { redis, config, hooks: runtime.hooks });
    const query = `channels=${encodeURIComponent(t.channels.join(','))}&ticket=${t.ticket}`;
    runtime.logger.info('ticket issued', { sub: identity.sub, channels: t.channels.length, transport: t.transport, byBackend });
    return json(201, {
      ticket: t.ticket,
      expiresAt: t.expiresAt,
      channels: t.channels,
      transport: t.transport,
      sseUrl: t.transport === 'sse' && sseUrl ? `${sseUrl}?${query}` : null,
      wsUrl: t.transport === 'ws' && wsUrl ? `${wsUrl}?ticket=${t.ticket}` : null,
    });
  });
}
