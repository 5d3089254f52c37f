import { LAMBDA_SETTINGS } from '../contract/settings';
import { removeConnection, subscriberPages, type ConnectionDeps, type Subscriber } from './connections';
import { envelopeSeq } from './events';
import { shardOf } from './shard';

/**
 * Delivery to API Gateway WebSocket connections through the management API (`PostToConnection`):
 * the fan-out of one published event to a channel's subscribers, and single frames to one
 * connection (replies of the message handler).
 *
 * - Subscribers are read with SSCAN one page at a time, never with one unbounded read.
 * - Posts run with bounded concurrency; a connection listed twice by SSCAN gets the event once.
 * - 410 (`GoneException`) removes the connection from every channel; throttling (429:
 *   `LimitExceededException`, `TooManyRequestsException`) and 5xx/network errors are retried with
 *   exponential backoff and full jitter; any other error fails that connection only.
 * - Nothing that happens to one connection stops delivery to the others.
 */

/**
 * What the fan-out and the handlers call on the management API: the lean `ManagementPoster` on AWS
 * (`createManagementPoster`, `core/aws/management-client.ts`), or the SDK client adapted by `createManagementClient` (`core/aws/management-sdk.ts`,
 * tests and benchmarks). Errors carry the SDK's shape, so `isGone`/`isThrottled`/`isRetryable` classify both alike.
 */
export interface ManagementApi {
  postToConnection(connectionId: string, data: Uint8Array): Promise<void>;
  /** Closes one connection (revocations; an inline post that failed after every retry). */
  deleteConnection(connectionId: string): Promise<void>;
}

export interface FanoutOptions {
  /** Posts in flight at once. Defaults to `WS_FANOUT_CONCURRENCY`'s (contract/settings.ts). */
  readonly concurrency?: number;
  /** SSCAN COUNT hint: subscribers read per page. Defaults to 500. */
  readonly pageSize?: number;
  /** Attempts per post when throttled or failing with a 5xx or network error. Defaults to 6. */
  readonly maxAttempts?: number;
  /** Base of the exponential backoff in milliseconds (full jitter). Defaults to 50. */
  readonly baseDelayMs?: number;
  /** Largest single backoff delay in milliseconds. Defaults to 2000. */
  readonly maxDelayMs?: number;
  /**
   * Milliseconds after registration during which a 410 does not unregister a connection: API
   * Gateway answers 410 while a connection is still inside `$connect`, and the entry written there
   * must survive. Defaults to `WS_GONE_GRACE_MS`'s (contract/settings.ts).
   */
  readonly goneGraceMs?: number;
  /**
   * Deliver only to the connections of one shard (`shardOf(connectionId, count) === index`, see
   * `core/sharding.ts`): a fan-out worker's share of a channel. Defaults to every connection.
   */
  readonly shard?: { readonly index: number; readonly count: number };
}

/** Where warnings go (Powertools' Logger fits). */
export interface FanoutLogger {
  warn(message: string, attributes: Record<string, unknown>): void;
}

export interface DeliveryDeps extends ConnectionDeps {
  readonly management: ManagementApi;
  readonly logger?: FanoutLogger;
  readonly options?: FanoutOptions;
}

export interface FanoutResult {
  /** Connections the event was posted to. */
  readonly delivered: number;
  /** Connections that answered 410 and were unregistered (or kept, inside their grace period). */
  readonly gone: number;
  /** Connections the event could not be posted to after retries. */
  readonly failed: number;
  /** Subscriptions that began after the event (their floor covers it) or duplicates of the scan. */
  readonly skipped: number;
  /** Retried posts (throttling, 5xx, network). */
  readonly retries: number;
}

export type PostOutcome = 'delivered' | 'gone' | 'failed';

const THROTTLING = new Set(['LimitExceededException', 'TooManyRequestsException', 'ThrottlingException', 'ThrottledException']);

interface SdkError {
  name?: string;
  code?: string;
  $metadata?: { httpStatusCode?: number };
}

function statusOf(err: unknown): number | undefined {
  return (err as SdkError | undefined)?.$metadata?.httpStatusCode;
}

/** SDK v3: the connection is gone (`GoneException`, HTTP 410). */
export function isGone(err: unknown): boolean {
  return (err as SdkError | undefined)?.name === 'GoneException' || statusOf(err) === 410;
}

/** SDK v3: the management API throttled the call (HTTP 429). */
export function isThrottled(err: unknown): boolean {
  const e = err as SdkError | undefined;
  return THROTTLING.has(e?.name ?? '') || statusOf(err) === 429;
}

/** Worth another attempt: throttling, a 5xx, or a network error (no HTTP status at all). */
export function isRetryable(err: unknown): boolean {
  if (isThrottled(err)) return true;
  const status = statusOf(err);
  if (status !== undefined) return status >= 500;
  const name = (err as SdkError | undefined)?.name ?? '';
  const code = (err as SdkError | undefined)?.code ?? '';
  return name === 'TimeoutError' || /^(ECONNRESET|ECONNREFUSED|EPIPE|ETIMEDOUT|EAI_AGAIN|ENOTFOUND)$/.test(code);
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function options(deps: DeliveryDeps) {
  const o = deps.options ?? {};
  return {
    concurrency: Math.max(1, o.concurrency ?? LAMBDA_SETTINGS.wsFanoutConcurrency.default),
    pageSize: Math.max(1, o.pageSize ?? 500),
    maxAttempts: Math.max(1, o.maxAttempts ?? 6),
    baseDelayMs: o.baseDelayMs ?? 50,
    maxDelayMs: o.maxDelayMs ?? 2000,
    goneGraceMs: o.goneGraceMs ?? LAMBDA_SETTINGS.wsGoneGraceMs.default,
    shard: o.shard && o.shard.count > 1 ? o.shard : undefined,
  };
}

interface Attempted {
  readonly outcome: PostOutcome;
  readonly retries: number;
  readonly error?: unknown;
}

/** Runs one management API call with the fan-out's retries (throttling, 5xx, network; exponential backoff, full jitter). */
async function attempt(call: () => Promise<unknown>, deps: DeliveryDeps): Promise<Attempted> {
  const o = options(deps);
  let retries = 0;
  for (let n = 1; ; n++) {
    try {
      await call();
      return { outcome: 'delivered', retries };
    } catch (err) {
      if (isGone(err)) return { outcome: 'gone', retries };
      if (!isRetryable(err) || n >= o.maxAttempts) return { outcome: 'failed', retries, error: err };
      retries++;
      await sleep(Math.random() * Math.min(o.maxDelayMs, o.baseDelayMs * 2 ** (n - 1)));
    }
  }
}

function post(connectionId: string, data: Uint8Array, deps: DeliveryDeps): Promise<Attempted> {
  const m = deps.management;
  return attempt(() => m.postToConnection(connectionId, data), deps);
}

/**
 * Closes connections that missed an event (their post failed after every retry), so that their
 * clients reconnect and resume with `since` from the history, in order, instead of going on without
 * the event. With the fan-out's retries; a 410 counts as closed. Returns how many were closed; the
 * others are logged (they missed the event and are still open).
 */
export async function closeMissed(connectionIds: readonly string[], seq: number, deps: DeliveryDeps): Promise<number> {
  const m = deps.management;
  let closed = 0;
  for (const connectionId of connectionIds) {
    const r = await attempt(() => m.deleteConnection(connectionId), deps);
    if (r.outcome === 'failed') deps.logger?.warn('a connection missed an event and could not be closed', { connectionId, id: String(seq), retries: r.retries, ...describeError(r.error) });
    else {
      closed++;
      deps.logger?.warn('closed a connection that missed an event: its client resumes with since', { connectionId, id: String(seq) });
    }
  }
  return closed;
}

function describeError(err: unknown): Record<string, unknown> {
  const e = err as SdkError & { message?: string };
  return { errorName: e?.name, status: statusOf(err), message: e?.message };
}

/** Unregisters a connection that answered 410, unless it is still young enough to be inside `$connect`. */
async function dropGone(connectionId: string, deps: DeliveryDeps, seen?: { channel: string; member: string }): Promise<void> {
  const o = options(deps);
  const now = (deps.now ?? Date.now)();
  try {
    await removeConnection(connectionId, deps, { registeredBefore: now - o.goneGraceMs, seen });
  } catch (err) {
    deps.logger?.warn('could not unregister a gone connection', { connectionId, ...describeError(err) });
  }
}

/**
 * Posts one frame to one connection, with the same retries as the fan-out. A 410 unregisters the
 * connection. Never throws.
 */
export async function sendToConnection(connectionId: string, frame: string, deps: DeliveryDeps): Promise<PostOutcome> {
  const r = await post(connectionId, Buffer.from(frame), deps);
  if (r.outcome === 'gone') await dropGone(connectionId, deps);
  else if (r.outcome === 'failed') deps.logger?.warn('post to connection failed', { connectionId, retries: r.retries, ...describeError(r.error) });
  return r.outcome;
}

/**
 * Delivers `envelope` (as serialised by core `publish()`) to every WebSocket connection subscribed
 * to `channel`. Resolves when every subscriber was tried; rejects only when Redis could not list
 * the subscribers (after posting to those already listed).
 */
export interface FanoutSelection {
  /** Post only to these connections (a redelivered work item retrying what failed). Defaults to all. */
  readonly only?: ReadonlySet<string>;
  /** Receives the ids of connections whose post failed after its retries. Defaults to none. */
  readonly failedIds?: string[];
  /** The channel's subscribers, listed by the caller ({@link listSubscribers}). Defaults to reading them page by page here. */
  readonly listed?: readonly Subscriber[];
}

/** Every subscriber of `channel` (all SSCAN pages), for a fan-out that must know them before it starts posting. */
export async function listSubscribers(channel: string, deps: DeliveryDeps): Promise<Subscriber[]> {
  const all: Subscriber[] = [];
  for await (const page of subscriberPages(channel, deps, options(deps).pageSize)) all.push(...page);
  return all;
}

export async function fanout(channel: string, envelope: string, deps: DeliveryDeps, select: FanoutSelection = {}): Promise<FanoutResult> {
  const o = options(deps);
  const seq = envelopeSeq(envelope);
  const data = Buffer.from(envelope);
  const seen = new Set<string>();
  let delivered = 0;
  let gone = 0;
  let failed = 0;
  let skipped = 0;
  let retries = 0;

  async function* subscribers(): AsyncGenerator<Subscriber> {
    if (select.listed) return yield* select.listed;
    for await (const page of subscriberPages(channel, deps, o.pageSize)) yield* page;
  }
  const it = subscribers();
  let scanError: unknown;

  const worker = async () => {
    for (;;) {
      let next: IteratorResult<Subscriber>;
      try {
        next = await it.next();
      } catch (err) {
        scanError ??= err;
        return;
      }
      if (next.done) return;
      const s = next.value;
      if (o.shard && shardOf(s.connectionId, o.shard.count) !== o.shard.index) continue;
      if (select.only && !select.only.has(s.connectionId)) continue;
      if (s.floor >= seq || seen.has(s.connectionId)) {
        skipped++;
        continue;
      }
      seen.add(s.connectionId);
      const r = await post(s.connectionId, data, deps);
      retries += r.retries;
      if (r.outcome === 'delivered') delivered++;
      else if (r.outcome === 'gone') {
        gone++;
        await dropGone(s.connectionId, deps, { channel, member: s.member });
      } else {
        failed++;
        select.failedIds?.push(s.connectionId);
        deps.logger?.warn('fan-out post failed', { channel, connectionId: s.connectionId, retries: r.retries, ...describeError(r.error) });
      }
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, worker));
  if (scanError !== undefined) throw scanError;
  return { delivered, gone, failed, skipped, retries };
}
