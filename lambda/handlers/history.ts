import { RealtimeError } from '../../core/errors';
import { DEFAULT_REPLAY_MAX_EVENTS } from '../../core/events';
import { assertMayReadHistory, historyBody, parseHistoryQuery, readHistory } from '../../core/history';
import { httpHandler } from '../shared/handler';
import { callerIdentity, type HttpEvent, type HttpResult } from '../shared/http';
import type { LambdaRuntime } from '../shared/runtime';

/**
 * `GET /history?channel&since&before&limit&reverse` (IAM-signed backends only) → `200 {"channel","events","reset",
 * "more","next"?,"position"}`: one page of a channel's retained events, at most REPLAY_MAX_EVENTS (1000) events and
 * REPLAY_MAX_BYTES, through the same replay as the transports (core/history.ts).
 */
export function createHistoryHandler(runtime: LambdaRuntime): (event: HttpEvent) => Promise<HttpResult> {
  return httpHandler(runtime, 'history', async (event) => {
    const identity = callerIdentity(event, runtime.config.trustedPrincipals);
    if (identity.kind === 'anonymous') throw new RealtimeError('unauthorized', 'Sign the request (IAM SigV4) to read history.');
    if (identity.kind !== 'server') throw new RealtimeError('forbidden', 'Only a backend (an IAM-signed request) reads history here; clients read it from the tasks with a ticket.');
    const { config, redis } = await runtime.clients();
    const params = event.queryStringParameters ?? {};
    const query = parseHistoryQuery((name) => params[name], config.namespaces, DEFAULT_REPLAY_MAX_EVENTS);
    assertMayReadHistory(identity, query.channel);
    const page = await readHistory(query, { redis, config });
    return { statusCode: 200, headers: { 'content-type': 'application/json', 'cache-control': 'no-store' }, body: historyBody(page) };
  });
}
