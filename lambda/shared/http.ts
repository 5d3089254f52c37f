import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { RealtimeError, errorBody, toRealtimeError } from '../../core/errors';
import type { Identity } from '../../core/identity';
import type { TrustedPrincipals } from '../../core/principals';

/** The HTTP API (payload v2) event with either authorizer context: JWT, IAM or a Lambda authorizer. */
export type HttpEvent = APIGatewayProxyEventV2 & {
  requestContext: APIGatewayProxyEventV2['requestContext'] & {
    authorizer?: {
      jwt?: { claims?: Record<string, string | number | boolean | string[]>; scopes?: string[] | null };
      iam?: { userArn?: string; callerId?: string; accountId?: string; principalOrgId?: string | null };
      lambda?: Record<string, unknown>;
    };
  };
};

export type HttpResult = APIGatewayProxyStructuredResultV2 & { statusCode: number };

/**
 * Who called, from the authorizer context only (never from headers the caller controls):
 * a JWT `sub` is a user; an IAM-signed call is a backend (`server`), trusted only when its role or
 * user is listed in `TRUSTED_PRINCIPALS` (HTTP APIs have no resource policies, so any principal
 * allowed `execute-api:Invoke` reaches here): any other IAM caller gets 403.
 */
export function callerIdentity(event: HttpEvent, trusted: TrustedPrincipals): Identity {
  const auth = event.requestContext.authorizer;
  const sub = auth?.jwt?.claims?.sub ?? auth?.lambda?.sub;
  if (typeof sub === 'string' && sub.length > 0) return { kind: 'user', sub };
  const arn = auth?.iam?.userArn;
  if (typeof arn === 'string' && arn.length > 0) {
    if (!trusted.trusts(arn)) {
      throw new RealtimeError('forbidden', `The IAM principal ${arn} is not a trusted backend: list its role in the stage's trustedPrincipals (TRUSTED_PRINCIPALS).`);
    }
    return { kind: 'server', principal: arn };
  }
  return { kind: 'anonymous' };
}

/**
 * When the caller's credentials end (epoch ms): the JWT `exp` claim the HTTP API's JWT authorizer
 * passes (seconds, as a number or a numeric string); undefined when unknown (IAM callers).
 */
export function callerNotAfter(event: HttpEvent): number | undefined {
  const exp = event.requestContext.authorizer?.jwt?.claims?.exp;
  const n = typeof exp === 'number' ? exp : typeof exp === 'string' && /^\d+$/.test(exp) ? Number(exp) : undefined;
  return n !== undefined && Number.isFinite(n) ? n * 1000 : undefined;
}

/** Parses the JSON body; a clear 400/415 for anything else. */
export function jsonBody(event: HttpEvent): Record<string, unknown> {
  const type = event.headers?.['content-type'] ?? event.headers?.['Content-Type'];
  if (type && !/^application\/(.+\+)?json\b/i.test(type)) {
    throw new RealtimeError('unsupported_media_type', 'Send the body as application/json.');
  }
  if (!event.body) throw new RealtimeError('invalid_json', 'The request body is empty; send a JSON object.');
  const text = event.isBase64Encoded ? Buffer.from(event.body, 'base64').toString('utf8') : event.body;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new RealtimeError('invalid_json', 'The request body is not valid JSON.');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new RealtimeError('invalid_json', 'The request body must be a JSON object.');
  }
  return parsed as Record<string, unknown>;
}

export function json(statusCode: number, body: unknown): HttpResult {
  return { statusCode, headers: { 'content-type': 'application/json', 'cache-control': 'no-store' }, body: JSON.stringify(body) };
}

/**
 * Maps an error to its JSON response; unknown errors become a 500 without details. `Retry-After`:
 * the seconds a refusal names (the 429s of a publish window), or 2 for `503 unavailable`.
 */
export function errorResult(err: unknown): HttpResult {
  const e = toRealtimeError(err);
  const res: HttpResult = { statusCode: e.status, headers: { 'content-type': 'application/json', 'cache-control': 'no-store' }, body: errorBody(e) };
  const after = e.retryAfterSeconds ?? (e.code === 'unavailable' ? 2 : undefined);
  if (after !== undefined) res.headers = { ...res.headers, 'retry-after': String(Math.max(1, Math.ceil(after))) };
  return res;
}
