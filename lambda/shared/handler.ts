import { errorBody, RealtimeError, toRealtimeError } from '../../core/errors';
import { frames } from '../../core/ws-protocol';
import { errorResult, type HttpEvent, type HttpResult } from './http';
import type { FanoutRuntime } from './fanout-runtime';
import type { LambdaRuntime } from './runtime';
import type { WsAuthorizerEvent, WsAuthorizerResult, WsEvent, WsResult } from './ws';

/**
 * The one error boundary of every Lambda handler. A handler body parses its event, calls a core
 * use-case and maps the result; anything it throws arrives here once, is mapped to what the caller
 * of that route understands, and is logged once: failures of ours (5xx) as errors with the event's
 * identifying fields, refusals (4xx) at debug level. No stack trace or internal message ever
 * reaches a client (`toRealtimeError`).
 */

/** How a route answers an error: an HTTP response, a WebSocket `error` frame, a Deny policy… */
export type ErrorAnswer<E, R> = (error: RealtimeError, event: E, runtime: LambdaRuntime) => R | Promise<R>;

export interface HandlerSpec<E, R> {
  /** Names the handler in log lines (`<name> failed`). */
  readonly name: string;
  readonly run: (event: E) => Promise<R>;
  readonly answer: ErrorAnswer<E, R>;
  /** Fields of the event logged with a failure (connection id, route). Defaults to none. */
  readonly context?: (event: E) => Record<string, unknown>;
  /** Level of the failure (5xx) line, for best-effort work whose failure is repaired elsewhere. Defaults to `error`. */
  readonly failureLevel?: 'error' | 'warn';
  /** Said after the failure line's name: what happens instead. Defaults to none. */
  readonly failureNote?: string;
}

export function wrapHandler<E, R>(runtime: LambdaRuntime, spec: HandlerSpec<E, R>): (event: E) => Promise<R> {
  return async (event: E) => {
    try {
      return await spec.run(event);
    } catch (err) {
      const e = toRealtimeError(err);
      const context = spec.context?.(event) ?? {};
      if (e.status >= 500) runtime.logger[spec.failureLevel ?? 'error'](`${spec.name} failed${spec.failureNote ? `; ${spec.failureNote}` : ''}`, { error: err as Error, code: e.code, ...context });
      else runtime.logger.debug(`${spec.name} refused`, { code: e.code, ...context });
      return spec.answer(e, event, runtime);
    }
  };
}

/** HTTP API routes: the JSON error body with its status (`503` and the publish 429s add `Retry-After`). */
export function httpHandler(runtime: LambdaRuntime, name: string, run: (event: HttpEvent) => Promise<HttpResult>): (event: HttpEvent) => Promise<HttpResult> {
  return wrapHandler(runtime, { name, run, answer: (e) => errorResult(e), context: (event) => ({ routeKey: event.routeKey }) });
}

const wsContext = (event: WsEvent | WsAuthorizerEvent) => ({ connectionId: event.requestContext.connectionId, routeKey: event.requestContext.routeKey });

/** WebSocket message routes: an `error` frame to the connection; the invocation itself succeeds (200). */
export function wsMessageHandler(runtime: FanoutRuntime, name: string, run: (event: WsEvent) => Promise<WsResult>): (event: WsEvent) => Promise<WsResult> {
  return wrapHandler(runtime, {
    name,
    run,
    answer: async (e, event) => {
      await runtime.postFrame(event.requestContext.connectionId, frames.error(e));
      return { statusCode: 200 };
    },
    context: wsContext,
  });
}

/** `$connect`: the error's status and JSON body, which rejects the upgrade. */
export function wsConnectHandler(runtime: LambdaRuntime, name: string, run: (event: WsEvent) => Promise<WsResult>): (event: WsEvent) => Promise<WsResult> {
  return wrapHandler(runtime, { name, run, answer: (e) => ({ statusCode: e.status, body: errorBody(e) }), context: wsContext });
}

/** `$disconnect`: nothing can be answered; 200 either way (the failure is logged). */
export function wsDisconnectHandler(runtime: LambdaRuntime, name: string, run: (event: WsEvent) => Promise<WsResult>): (event: WsEvent) => Promise<WsResult> {
  return wrapHandler(runtime, {
    name,
    run,
    answer: () => ({ statusCode: 200 }),
    context: wsContext,
    failureLevel: 'warn',
    failureNote: 'the fan-out removes the connection on its first 410',
  });
}

/** An authorizer's policy for the `$connect` request. */
export function policy(principalId: string, effect: 'Allow' | 'Deny', resource: string, context?: Record<string, string | number | boolean>): WsAuthorizerResult {
  return {
    principalId,
    policyDocument: { Version: '2012-10-17', Statement: [{ Action: 'execute-api:Invoke', Effect: effect, Resource: resource }] },
    ...(context ? { context: { ...context } } : {}),
  };
}

/** The `$connect` authorizer: any error is a Deny (403 on the upgrade); it never throws. */
export function wsAuthorizerHandler(
  runtime: LambdaRuntime,
  name: string,
  run: (event: WsAuthorizerEvent) => Promise<WsAuthorizerResult>,
): (event: WsAuthorizerEvent) => Promise<WsAuthorizerResult> {
  return wrapHandler(runtime, { name, run, answer: (_e, event) => policy('anonymous', 'Deny', event.methodArn), context: wsContext });
}
