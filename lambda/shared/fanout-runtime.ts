import { createManagementPoster } from '../../core/aws/management-client';
import { sendToConnection, type ManagementApi } from '../../core/fanout';
import { deferReplay, dispatchFanout, queuedDelivery, resumeFanout, type DispatchDeps, type WorkQueue } from '../../core/fanout-queue';
import { environmentCredentials } from '../../core/aws/signer';
import { SqsFifoQueue } from '../../core/aws/sqs';
import type { Fanout } from '../../core/publishing';
import type { WsSessionDeps } from '../../core/ws-session';
import { LambdaRuntime, type Runtime } from './runtime';

/**
 * The runtime of the handlers that post to WebSocket connections (publish, WebSocket frames, the
 * fan-out worker, revoke): a {@link LambdaRuntime} plus the management API (the lean SigV4 poster,
 * `core/aws/management.ts`) and the fan-out queue (SQS FIFO, `core/aws/sqs.ts`), both signed with the
 * Lambda role's credentials from the environment. The local stack runs every handler on one.
 */
export class FanoutRuntime extends LambdaRuntime {
  private poster?: ReturnType<typeof createManagementPoster>;

  /**
   * The management API client: one per container, the lean SigV4 poster on keep-alive sockets (as
   * many as posts in flight), for posts, revocations' DeleteConnection and the presence sweeper's GetConnection.
   * Undefined without an endpoint.
   */
  postClient(): ReturnType<typeof createManagementPoster> | undefined {
    const endpoint = this.config.wsManagementEndpoint;
    if (!endpoint) return undefined;
    this.poster ??= createManagementPoster(endpoint, { maxSockets: this.config.wsFanoutConcurrency, env: this.env });
    return this.poster;
  }

  /** The fan-out queue (SQS FIFO from `wsFanoutQueueUrl`, or the one given); undefined without one. */
  fanoutQueue(): WorkQueue | undefined {
    if (this.queue) return this.queue;
    const url = this.config.wsFanoutQueueUrl;
    if (!url) return undefined;
    // Signed with the Lambda role's credentials from the environment, like the poster.
    this.queue = new SqsFifoQueue(url, { credentials: environmentCredentials(this.env) });
    return this.queue;
  }

  /** Fan-out dependencies over the management API (and the queue, with one). */
  delivery(rt: Runtime, management: ManagementApi): DispatchDeps {
    return {
      redis: rt.redis,
      config: rt.config,
      management,
      logger: this.logger,
      queue: this.fanoutQueue(),
      dispatch: { shards: this.config.wsFanoutShards, inlineMax: this.config.wsFanoutInlineMax, replayInlineMax: this.config.wsReplayInlineMax },
      options: { concurrency: this.config.wsFanoutConcurrency, goneGraceMs: this.config.wsGoneGraceMs },
    };
  }

  /**
   * What the WebSocket use-cases need on API Gateway: `send` is PostToConnection (with the fan-out's
   * retries; a 410 unregisters the connection), `fanout` posts to every subscriber. Without a
   * management endpoint there is no `fanout` and `send` fails every frame.
   */
  sessionDeps(rt: Runtime): WsSessionDeps {
    const management = this.postClient();
    const delivery = management ? this.delivery(rt, management) : undefined;
    return {
      redis: rt.redis,
      config: rt.config,
      logger: this.logger,
      send: async (connectionId, frame) => (delivery ? sendToConnection(connectionId, frame, delivery) : 'failed'),
      fanout: delivery ? (channel, envelope, o) => dispatchFanout(channel, envelope, delivery, { track: o?.track }) : undefined,
      resumeFanout: delivery ? (channel, id) => resumeFanout(channel, id, delivery) : undefined,
      deferReplay: delivery?.queue ? (connectionId, channel, after, floor) => deferReplay(connectionId, channel, after, floor, delivery) : undefined,
      replayInlineMax: this.config.wsReplayInlineMax,
      hooks: this.hooks,
    };
  }

  /**
   * Where `$connect` hands the `presence.join` events of its connection: the fan-out queue when there is one (one
   * SendMessage per shard whatever the audience: the connecting client waits for `$connect`, so it posts nothing
   * itself), else inline like a publish ({@link sessionDeps}). Undefined without either.
   */
  connectFanout(rt: Runtime): Fanout | undefined {
    const queue = this.fanoutQueue();
    if (queue) return queuedDelivery({ redis: rt.redis, config: rt.config, queue, shards: this.config.wsFanoutShards }).fanout;
    return this.sessionDeps(rt).fanout;
  }

  /**
   * Posts one frame, also when Redis is unavailable (an error frame answering a frame that could not
   * run): through the registry-aware `sendToConnection` once the clients started, else a bare post.
   */
  async postFrame(connectionId: string, frame: string): Promise<void> {
    const management = this.postClient();
    if (!management) return;
    if (this.started) {
      await sendToConnection(connectionId, frame, this.delivery(this.started, management));
      return;
    }
    await management.postToConnection(connectionId, Buffer.from(frame)).catch(() => undefined);
  }

  /** Closes the poster's sockets, the queue's and the clients. */
  override async close(): Promise<void> {
    this.poster?.destroy();
    this.poster = undefined;
    if (this.queue instanceof SqsFifoQueue) {
      this.queue.destroy();
      this.queue = undefined;
    }
    await super.close();
  }
}
