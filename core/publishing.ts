import type { ChannelGrant } from './channels';
import { publish, type EventDeps, type PublishInput, type PublishResult } from './events';
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
export type Fanout = (channel: string, envelope: string) => Promise<FanoutStats | void>;

export interface PublishAndFanoutDeps extends EventDeps {
  /** WebSocket delivery. Defaults to none (a deployment without WebSockets). */
  readonly fanout?: Fanout;
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
 * Publishes and fans out once: an idempotent retry (`duplicate`) was fanned out by the first
 * publish. A failed fan-out is logged, not thrown: the event is stored and SSE subscribers got it,
 * so the publisher is told it was published. `grant` is the publishing connection's ticket grant
 * (it opens `granted` namespaces).
 */
export async function publishAndFanout(input: PublishInput, identity: Identity, deps: PublishAndFanoutDeps, grant?: ChannelGrant, options: PublishAndFanoutOptions = {}): Promise<PublishResult> {
  const result = await publish(
    { channel: input.channel, type: input.type, data: input.data, idempotencyKey: input.idempotencyKey },
    identity,
    { redis: deps.redis, config: deps.config },
    grant,
  );
  await options.acknowledge?.(result);
  let stats: FanoutStats | void = undefined;
  if (deps.fanout && !result.duplicate && result.envelope) {
    try {
      stats = await deps.fanout(result.channel, result.envelope);
    } catch (err) {
      deps.logger?.error('fan-out failed; SSE subscribers still received the event', { error: err as Error, channel: result.channel, id: result.id });
    }
  }
  deps.logger?.info('published', { channel: result.channel, id: result.id, duplicate: result.duplicate, ...options.logAttributes, ...(stats ?? {}) });
  return result;
}
