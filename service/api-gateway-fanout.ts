import type Redis from 'ioredis';
import type { CoreConfig } from '../core/config';
import { countSubscribers } from '../core/connections';
import { RealtimeError } from '../core/errors';
import type { ManagementApi } from '../core/fanout';
import { dispatchFanout, resumeFanout, type WorkQueue } from '../core/fanout-queue';
import type { Fanout, ResumeFanout } from '../core/publishing';

/**
 * `webSocket.mode` `both`: a publish made on a task's `/live` socket must also reach the connections still on API
 * Gateway. The tasks do not post to them: they hand the event to the fan-out queue (one work item per shard, the
 * same items a large publish of the Lambda path enqueues), and the fan-out worker posts it. So the task role needs
 * `sqs:SendMessage` on that one queue and nothing on the management API, and the API Gateway connections get the event
 * in their channel's order, at least once, with the worker's retries and dead-letter queue.
 *
 * A channel without API Gateway subscribers (one SCARD) enqueues nothing. The other direction needs nothing here: an
 * event published on the API Gateway path is PUBLISHed in Redis and reaches every task's hub, so `/live` sockets get it.
 */

/** The management API the tasks do not have: every call is a bug (the dispatch below never posts inline). */
const NO_MANAGEMENT: ManagementApi = {
  postToConnection: () => Promise.reject(new RealtimeError('internal', 'the tasks do not post to API Gateway connections; the fan-out worker does')),
  deleteConnection: () => Promise.reject(new RealtimeError('internal', 'the tasks do not close API Gateway connections')),
};

export interface ApiGatewayFanoutDeps {
  readonly redis: Redis;
  readonly config: CoreConfig;
  /** The fan-out queue (SQS FIFO on AWS, the local queue in the local stack). */
  readonly queue: WorkQueue;
  /** Shards of the queue's items: the worker's `WS_FANOUT_SHARDS`. */
  readonly shards: number;
}

/**
 * The delivery of a task in mode `both`: `fanout` sends every API Gateway audience through the queue; `resumeFanout`
 * completes it on an idempotent retry (`duplicate`) when the queue refused items the first time.
 */
export function apiGatewayDelivery(deps: ApiGatewayFanoutDeps): { readonly fanout: Fanout; readonly resumeFanout: ResumeFanout } {
  const delivery = {
    redis: deps.redis,
    config: deps.config,
    management: NO_MANAGEMENT,
    queue: deps.queue,
    // inlineMax 0: never inline, whatever the audience.
    dispatch: { shards: deps.shards, inlineMax: 0 },
  };
  return {
    fanout: async (channel, envelope, options) => {
      if ((await countSubscribers(channel, deps)) === 0) return { subscribers: 0 };
      return dispatchFanout(channel, envelope, delivery, { track: options?.track });
    },
    resumeFanout: (channel, id) => resumeFanout(channel, id, delivery),
  };
}
