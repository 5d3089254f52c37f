/** Error codes of the wire contract, with the HTTP status each maps to. */
export const ERROR_STATUS = {
  bad_request: 400,
  invalid_json: 400,
  invalid_channel: 400,
  invalid_type: 400,
  invalid_cursor: 400,
  invalid_info: 400,
  too_many_channels: 400,
  unauthorized: 401,
  ticket_invalid: 401,
  forbidden: 403,
  channel_not_granted: 403,
  publish_rejected: 403,
  origin_not_allowed: 403,
  not_found: 404,
  method_not_allowed: 405,
  idempotency_conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  channel_quota_exceeded: 429,
  retained_bytes_exceeded: 429,
  internal: 500,
  unavailable: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

/** The one error class of the runtime: a code from the wire contract and a message that says what to change. */
export class RealtimeError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Seconds until a retry can succeed, for refusals that know it (the 429s of a window): the HTTP answer's `Retry-After`. */
  readonly retryAfterSeconds?: number;
  /** The app's own code for a refusal it decided (a publish hook's `reject`), beside ours. */
  readonly reason?: string;

  constructor(code: ErrorCode, message: string, options: { retryAfterSeconds?: number; reason?: string } = {}) {
    super(message);
    this.name = 'RealtimeError';
    this.code = code;
    this.status = ERROR_STATUS[code];
    if (options.retryAfterSeconds !== undefined) this.retryAfterSeconds = options.retryAfterSeconds;
    if (options.reason !== undefined) this.reason = options.reason;
  }

  toJSON(): { error: { code: ErrorCode; message: string; reason?: string } } {
    return { error: this.reason === undefined ? { code: this.code, message: this.message } : { code: this.code, message: this.message, reason: this.reason } };
  }
}

/** Maps any thrown value to a wire error; unknown errors never leak their message or stack. */
export function toRealtimeError(err: unknown): RealtimeError {
  if (err instanceof RealtimeError) return err;
  if (isRedisUnavailable(err)) return new RealtimeError('unavailable', 'The event store is unreachable; retry shortly.');
  // maxmemory-policy noeviction: a full Redis refuses writes instead of evicting tickets, connections or history.
  if (err instanceof Error && /^OOM\b/.test(err.message)) return new RealtimeError('unavailable', 'The event store is out of memory; nothing was written. Retry later.');
  return new RealtimeError('internal', 'Internal error.');
}

/**
 * True for the errors ioredis raises while the connection is down or a command timed out, and for
 * `READONLY` (a write that reached a primary demoted by a failover: the client reconnects to the new
 * one, so a retry succeeds).
 */
export function isRedisUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const m = err.message;
  return (
    err.name === 'MaxRetriesPerRequestError' ||
    /Connection is closed|Stream isn't writeable|ECONNREFUSED|ECONNRESET|ETIMEDOUT|Command timed out|connect ETIMEDOUT|LOADING|enableOfflineQueue/.test(m) ||
    m.startsWith('READONLY')
  );
}

/** The JSON body of an error response. */
export function errorBody(err: RealtimeError): string {
  return JSON.stringify(err.toJSON());
}
