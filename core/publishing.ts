import type { ChannelGrant } from './channels';
import { publish, type EventDeps, type PublishInput, type PublishResult } from './events';
import { toRealtimeError } from './errors';
import { appendEvent, emitsClientPublish, eventId } from './backend-events';
import type { Identity } from './identity';

/**
 * The one publish path: validate, store and publish (core `publish()`: SSE tasks receive the event
 * through Redis pub/sub), then hand it to this deployment's WebSocket delivery. A backend's
 * `POST /publish` and a WebSocket client's `publish` frame both call {@link publishAndFanout}.
 */

/** Where the use-cases log (Powertools' Logger fits; attributes are structured fields). */
export interface UseCaseLogger {
  info(message: string, attributes: Record<string, unknown>): void;
  warn(message: string, attributes: Record<string, unknown>): void;
  error(message: string, attributes: Record<string, unknown>): void;
}

/** Counts of one fan-out, logged with the publish (see `core/fanout.ts` `FanoutResult`). */
export type FanoutStats = Readonly<Record<string, number>>;

/**
 * Delivers a published envelope to the channel's WebSocket connections (the management API's
 * PostToConnection on API Gateway). Resolves with counts to log; rejects only when the subscribers
 * could not be listed.
 */
export type Fanout = (channel: string, envelope: string, options?: { readonly track?: boolean }) => Promise<FanoutStats | void>;

/**
 * Completes the WebSocket delivery of an event published earlier under the same idempotency key,
 * when its first fan-out was not completely handed over (see `core/fanout-queue.ts` `resumeFanout`).
 */
export type ResumeFanout = (channel: string, id: string) => Promise<FanoutStats | void>;

export interface PublishAndFanoutDeps extends EventDeps {
  /** WebSocket delivery. Defaults to none (a deployment without WebSockets). */
  readonly fanout?: Fanout;
  /** Completion of an interrupted delivery on an idempotent retry. Defaults to none (a retry is not fanned out again). */
  readonly resumeFanout?: ResumeFanout;
  readonly logger?: UseCaseLogger;
}

export interface PublishAndFanoutOptions {
  /**
   * Called once the event is stored and published, before the fan-out: a WebSocket publisher gets
   * its `published` frame ahead of its own copy of the event. Defaults to none.
   */
  readonly acknowledge?: (result: PublishResult) => Promise<unknown>;
  /** Attributes added to the `published` log line (e.g. the publishing connection). Defaults to none. */
  readonly logAttributes?: Record<string, unknown>;
}

/**
 * Publishes and fans out. An idempotent retry (`duplicate`) completes a fan-out the first attempt
 * did not hand over completely (`resumeFanout`), and does nothing more when it did. A failed
 * fan-out is logged, not thrown: the event is stored and SSE subscribers got it, so the publisher
 * is told it was published; except when the publish carried an idempotency key and the fan-out
 * failed `unavailable` (the queue refused work items, or Redis went away before the subscribers
 * were listed or the hand-over recorded): then the publisher is told to retry, and its retry
 * delivers what is missing. `grant` is the publishing connection's ticket grant (it opens `granted` namespaces).
 */
export async function publishAndFanout(input: PublishInput, identity: Identity, deps: PublishAndFanoutDeps, grant?: ChannelGrant, options: PublishAndFanoutOptions = {}): Promise<PublishResult> {
  const result = await publish(
    { channel: input.channel, type: input.type, data: input.data, idempotencyKey: input.idempotencyKey },
    identity,
    { redis: deps.redis, config: deps.config, broker: deps.broker },
    grant,
  );
  // `client.publish` before the publisher hears `published`: if this fails the publisher retries (with its idempotency
  // key: the duplicate appends the same event id again), so the backend event is never lost for an acknowledged publish.
  if (identity.kind === 'user' && emitsClientPublish(result.channel, deps.config)) {
    await appendEvent(
      'client.publish',
      { channel: result.channel, eventId: result.id, eventType: input.type, sub: identity.sub, data: input.data },
      eventId('client.publish', result.channel, result.id),
      deps,
    );
  }
  await options.acknowledge?.(result);
  let stats: FanoutStats | void = undefined;
  const tracked = input.idempotencyKey !== undefined && input.idempotencyKey !== null;
  try {
    if (deps.fanout && !result.duplicate && result.envelope) stats = await deps.fanout(result.channel, result.envelope, { track: tracked });
    else if (deps.resumeFanout && result.duplicate) stats = await deps.resumeFanout(result.channel, result.id);
  } catch (err) {
    deps.logger?.error('fan-out failed; SSE subscribers still received the event', { error: err as Error, channel: result.channel, id: result.id });
    // Redis gone between the write and the fan-out (a restart, a failover) is `unavailable` too: the
    // subscribers were never listed, so only the retry (`resumeFanout`) can still reach them.
    const e = toRealtimeError(err);
    if (tracked && e.code === 'unavailable') throw e;
  }
  deps.logger?.info('published', { channel: result.channel, id: result.id, duplicate: result.duplicate, ...options.logAttributes, ...(stats ?? {}) });
  return result;
}
