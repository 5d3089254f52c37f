/**
 * `@realtime-blueprint/server`: the backend SDK of the Realtime Blueprint. Publishes events, mints tickets for
 * users, revokes them and reads history over the stack's IAM routes, SigV4-signed with the AWS SDK's credential chain; retries
 * 429 and 5xx gateway answers (honouring `Retry-After`) under one idempotency key per publish; one error class.
 * Node >= 20.
 */
import { randomUUID } from 'node:crypto';
import { defaultProvider } from '@aws-sdk/credential-provider-node';
import type { ChannelOf, ChannelSchema, EventsOf } from '../../client/src/schema';
import { jsonRequest, regionOfHost, signRequest, type AwsCredentials, type AwsCredentialsProvider } from './sigv4';

export type { ChannelName, ChannelOf, ChannelSchema, EventsOf } from '../../client/src/schema';
export type { AwsCredentials, AwsCredentialsProvider } from './sigv4';

/** What went wrong, in one class. `code` is the stack's error code (`bad_request`, `forbidden`, `rate_limited`, `unavailable`…), or `network`, `timeout`, `credentials` when no answer came. */
export class RealtimeServerError extends Error {
  override readonly name = 'RealtimeServerError';
  constructor(
    /** The stack's error code; for API Gateway's own answers (`{"message"}`) one derived from the status. */
    readonly code: string,
    message: string,
    /** HTTP status; 0 when no answer came. */
    readonly status: number,
    /** Seconds the stack asked to wait (`Retry-After`), when it said. */
    readonly retryAfter?: number,
    /** Attempts made, retries included. */
    readonly attempts = 1,
    /** The idempotency key the publish was sent under (every attempt used it). */
    readonly idempotencyKey?: string,
  ) {
    super(message);
  }
}

/** One retry about to happen (for logs and metrics). */
export interface RetryInfo {
  /** The attempt that failed (1 = the first). */
  readonly attempt: number;
  readonly error: RealtimeServerError;
  /** How long the SDK waits before the next attempt: `Retry-After` when given, else the backoff. */
  readonly delayMs: number;
  readonly idempotencyKey?: string;
}

/** One page of `GET /history`: envelopes `{channel,id,type,data,ts,prev}`, oldest first (newest first in reverse). */
export interface HistoryAnswer {
  readonly channel: string;
  /** `prev`: the channel's previous event id ("0" for its first; absent from a stack before it). */
  readonly events: { channel: string; id: string; type: string; data: unknown; ts: number; prev?: string }[];
  /** The history no longer reaches back to `since`: events after it were lost. */
  readonly reset: boolean;
  /** The page ended at its bound: ask again with `since: next` (or `before: next` in reverse). */
  readonly more: boolean;
  readonly next?: string;
  /** The sequence when the page was read. */
  readonly position: string;
}

export interface ServerClientOptions {
  /** The stack's `PublishUrl` output (`https://…/publish`); `POST /revoke` and `GET /history` are its siblings on the same API. */
  readonly publishUrl: string;
  /**
   * Where backends mint tickets: the `TicketUrl` output's `/backend/tickets` when the ticket API uses JWT (the
   * default; the local stack too), `TicketUrl` itself when it uses IAM. Defaults to none: `ticket()` throws.
   */
  readonly ticketUrl?: string;
  /** Region of the SigV4 credential scope. Defaults to the region in an `execute-api` host, then `AWS_REGION`, `AWS_DEFAULT_REGION`. */
  readonly region?: string;
  /** Credentials, or a provider of them. Defaults to the AWS SDK's chain (`defaultProvider()` of `@aws-sdk/credential-provider-node`: environment, SSO, profiles, web identity, ECS and EC2 roles). */
  readonly credentials?: AwsCredentials | AwsCredentialsProvider;
  /** Attempts per call, the first included. Defaults to 4. */
  readonly maxAttempts?: number;
  /** Longest wait between attempts in milliseconds; a `Retry-After` longer than this ends the call with the error (its `retryAfter` says when). Defaults to 20000. */
  readonly maxRetryDelayMs?: number;
  /** Time limit of one attempt in milliseconds. Defaults to 10000. */
  readonly timeoutMs?: number;
  /** Called before each retry's wait. Defaults to none. */
  readonly onRetry?: (retry: RetryInfo) => void | Promise<void>;
  /** Defaults to the global `fetch`. */
  readonly fetch?: typeof fetch;
}

/** What `POST /tickets` answers. */
export interface TicketAnswer {
  ticket: string;
  expiresAt: string;
  channels: string[];
  transport: 'sse' | 'ws';
  sseUrl: string | null;
  wsUrl: string | null;
}

/** What `POST /publish` answers: `duplicate` when the idempotency key was already published (the same id). */
export interface PublishAnswer {
  id: string;
  duplicate: boolean;
  /** The key it was published under (generated when none was given). */
  idempotencyKey: string;
}

/** Status codes retried: throttling (429) and the gateway's or the stack's "not now" (502, 503, 504). */
const RETRY_STATUS = new Set([429, 502, 503, 504]);
/** Error codes of API Gateway's own answers (`{"message":"Forbidden"}`), by status. */
const STATUS_CODE: Record<number, string> = { 400: 'bad_request', 401: 'unauthorized', 403: 'forbidden', 404: 'not_found', 409: 'conflict', 413: 'payload_too_large', 429: 'rate_limited', 500: 'internal', 502: 'bad_gateway', 503: 'unavailable', 504: 'timeout' };

/** `Retry-After` in seconds (delta-seconds or an HTTP date), or undefined. */
function retryAfterOf(value: string | null, now = Date.now()): number | undefined {
  if (value === null || value.trim() === '') return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - now) / 1000));
}

/** Backoff without `Retry-After`: full jitter, 200 ms·2^(attempt-1), at most 5 s. */
const backoff = (attempt: number): number => Math.random() * Math.min(5000, 200 * 2 ** (attempt - 1));

/**
 * Calls the stack's IAM routes as a trusted backend (its role must be listed in the stage's `trustedPrincipals`).
 * `S`, a channel schema, types `publish` as the client's typed channels do.
 */
export class ServerClient<S extends ChannelSchema = ChannelSchema> {
  private readonly o: Required<Pick<ServerClientOptions, 'maxAttempts' | 'maxRetryDelayMs' | 'timeoutMs'>> & ServerClientOptions;
  private readonly credentials: AwsCredentials | AwsCredentialsProvider;

  constructor(options: ServerClientOptions) {
    for (const [k, v] of Object.entries({ publishUrl: options.publishUrl, ticketUrl: options.ticketUrl })) {
      if (v === undefined && k === 'ticketUrl') continue;
      try {
        new URL(v as string);
      } catch {
        throw new RealtimeServerError('bad_config', `${k} "${v}" is not a URL: pass the stack output (e.g. https://abc.execute-api.eu-west-1.amazonaws.com/publish).`, 0);
      }
    }
    this.o = { maxAttempts: 4, maxRetryDelayMs: 20_000, timeoutMs: 10_000, ...options };
    this.credentials = options.credentials ?? defaultProvider();
  }

  /**
   * Publishes an event: `202 {"id","duplicate"}`. Every attempt carries the same idempotency key (the one given,
   * else a random UUID), so a retry after a lost answer publishes once and answers the first id with `duplicate`.
   */
  async publish<C extends ChannelOf<S>, K extends keyof EventsOf<S, C> & string>(channel: C, type: K, data: EventsOf<S, C>[K], opts: { idempotencyKey?: string } = {}): Promise<PublishAnswer> {
    const idempotencyKey = opts.idempotencyKey ?? randomUUID();
    const r = await this.call<{ id: string; duplicate: boolean }>(this.o.publishUrl, { channel, type, data, idempotencyKey }, idempotencyKey);
    return { id: r.id, duplicate: r.duplicate, idempotencyKey };
  }

  /**
   * Mints a ticket for user `sub` (a backend may name channels of `granted` namespaces, after checking membership), with
   * the user's presence `info` if given (a JSON object of at most 512 bytes, e.g. `{ name: 'Ann' }`: what the member shows).
   */
  async ticket(request: { sub: string; channels: ChannelOf<S>[]; transport?: 'sse' | 'ws'; info?: Record<string, unknown> }): Promise<TicketAnswer> {
    if (!this.o.ticketUrl) throw new RealtimeServerError('bad_config', 'No ticketUrl: pass the TicketUrl output with /backend/tickets (ticket API with JWT) or TicketUrl (with IAM).', 0);
    return this.call<TicketAnswer>(this.o.ticketUrl, request);
  }

  /** Ends every ticket, reconnect cookie, stream, poll and WebSocket of user `sub` issued before now. */
  async revoke(sub: string): Promise<{ sub: string; epoch: number }> {
    return this.call(new URL('revoke', this.o.publishUrl).toString(), { sub });
  }

  /**
   * One page of a channel's retained events (`GET /history`, a sibling of `POST /publish`): oldest first after
   * `since`, or newest first with `reverse` (next page: `before: page.next`); at most `limit` events, and the stack's
   * page bounds (REPLAY_MAX_EVENTS, REPLAY_MAX_BYTES). `reset` says the history no longer reaches back to `since`.
   */
  async history<C extends ChannelOf<S>>(channel: C, opts: { since?: string; before?: string; limit?: number; reverse?: boolean } = {}): Promise<HistoryAnswer> {
    const url = new URL('history', this.o.publishUrl);
    url.searchParams.set('channel', channel);
    if (opts.since !== undefined) url.searchParams.set('since', opts.since);
    if (opts.before !== undefined) url.searchParams.set('before', opts.before);
    if (opts.limit !== undefined) url.searchParams.set('limit', String(opts.limit));
    if (opts.reverse) url.searchParams.set('reverse', 'true');
    return this.call<HistoryAnswer>(url.toString(), undefined, undefined, 'GET');
  }

  /** Sends JSON (POST) or reads (GET), signed afresh on every attempt; retries what may succeed later. */
  private async call<T>(url: string, body: unknown, idempotencyKey?: string, method: 'POST' | 'GET' = 'POST'): Promise<T> {
    const target = new URL(url);
    const payload = method === 'GET' ? '' : JSON.stringify(body);
    const region = this.o.region ?? regionOfHost(target.hostname) ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION;
    if (!region) throw new RealtimeServerError('bad_config', `Cannot tell the region of ${target.host} for SigV4: pass region (or set AWS_REGION).`, 0);
    for (let attempt = 1; ; attempt++) {
      const outcome = await this.attempt<T>(target, method, payload, region, attempt, idempotencyKey);
      if (!(outcome instanceof RealtimeServerError)) return outcome.value;
      const error = outcome;
      const retryable = RETRY_STATUS.has(error.status) || error.code === 'network' || error.code === 'timeout';
      const delayMs = error.retryAfter !== undefined ? error.retryAfter * 1000 : backoff(attempt);
      if (!retryable || attempt >= this.o.maxAttempts || delayMs > this.o.maxRetryDelayMs) throw error;
      await this.o.onRetry?.({ attempt, error, delayMs, idempotencyKey });
      await new Promise((r) => setTimeout(r, delayMs));
    }
  }

  private async attempt<T>(url: URL, method: 'POST' | 'GET', payload: string, region: string, attempt: number, idempotencyKey?: string): Promise<{ value: T } | RealtimeServerError> {
    const fail = (code: string, message: string, status: number, retryAfter?: number) => new RealtimeServerError(code, message, status, retryAfter, attempt, idempotencyKey);
    let headers: Record<string, string>;
    try {
      headers = await signRequest(jsonRequest(method, url, payload), region, this.credentials);
    } catch (err) {
      throw fail('credentials', `No AWS credentials to sign with (${err instanceof Error ? err.message : String(err)}): configure the AWS SDK's credential chain (AWS_PROFILE, a role, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY).`, 0);
    }
    let res: Response;
    try {
      res = await (this.o.fetch ?? fetch)(url, { method, headers, body: method === 'GET' ? undefined : payload, signal: AbortSignal.timeout(this.o.timeoutMs) });
    } catch (err) {
      // A DOMException (AbortSignal.timeout), which need not be an `Error` of this realm.
      const name = (err as { name?: string } | undefined)?.name;
      const timeout = name === 'TimeoutError' || name === 'AbortError';
      if (timeout) return fail('timeout', `No answer from ${url.origin}${url.pathname} within ${this.o.timeoutMs} ms.`, 0);
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      const why = [cause?.code, cause?.message || (err instanceof Error ? err.message : String(err))].filter(Boolean).join(' ');
      return fail('network', `${url.origin}${url.pathname}: ${why}`, 0);
    }
    const text = await res.text();
    let parsed: { error?: { code?: string; message?: string }; message?: string } | undefined;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    if (res.status >= 200 && res.status < 300) {
      if (parsed === undefined) return fail('bad_answer', `${url.pathname} answered ${res.status} without JSON.`, res.status);
      return { value: parsed as T };
    }
    const code = parsed?.error?.code ?? STATUS_CODE[res.status] ?? `http_${res.status}`;
    const message = parsed?.error?.message ?? parsed?.message ?? (text.slice(0, 200) || res.statusText);
    return fail(code, message, res.status, retryAfterOf(res.headers.get('retry-after')));
  }
}

/** Creates the backend client; `S`, a channel schema, types `publish`. */
export function createServerClient<S extends ChannelSchema = ChannelSchema>(options: ServerClientOptions): ServerClient<S> {
  return new ServerClient<S>(options);
}
