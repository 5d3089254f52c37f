import { queuedDelivery, type QueuedDeliveryDeps } from '../core/fanout-queue';
import type { Fanout, ResumeFanout } from '../core/publishing';

/**
 * `webSocket.mode` `both`: a publish made on a task's `/live` socket must also reach the connections still on API
 * Gateway. The tasks do not post to them: they hand the event to the fan-out queue (one work item per shard, the
 * same items a large publish of the Lambda path enqueues), and the fan-out worker posts it. So the task role needs
 * `sqs:SendMessage` on that one queue and nothing on the management API, and the API Gateway connections get the event
 * in their channel's order, at least once, with the worker's retries and dead-letter queue. The presence events the
 * tasks append (joins, leaves, settles) go the same way (`webSocket.mode` `apigateway` gives the tasks the queue too
 * when a namespace has presence on).
 *
 * A channel without API Gateway subscribers (one SCARD) enqueues nothing. The other direction needs nothing here: an
 * event published on the API Gateway path is PUBLISHed in Redis and reaches every task's hub, so `/live` sockets get it.
 */

export type ApiGatewayFanoutDeps = QueuedDeliveryDeps;

/**
 * The delivery of a task with the fan-out queue: `fanout` sends every API Gateway audience through the queue;
 * `resumeFanout` completes it on an idempotent retry (`duplicate`) when the queue refused items the first time.
 */
export function apiGatewayDelivery(deps: ApiGatewayFanoutDeps): { readonly fanout: Fanout; readonly resumeFanout: ResumeFanout } {
  return queuedDelivery(deps);
}
