import { Logger } from '@aws-lambda-powertools/logger';
import type Redis from 'ioredis';
import { environmentCredentials } from '../../core/aws';
import type { CoreConfig } from '../../core/config';
import { createManagementPoster, sendToConnection, type ManagementApi } from '../../core/fanout';
import { deferReplay, dispatchFanout, resumeFanout, type DispatchDeps, type WorkQueue } from '../../core/fanout-queue';
import { SqsFifoQueue } from '../../core/sqs';
import { createRedis, waitReady } from '../../core/redis';
import { secretPassword } from '../../core/secrets';
import type { WsSessionDeps } from '../../core/ws-session';
import { lambdaConfigFromEnv, type LambdaConfig } from './config';

/** The started clients of a runtime. */
export interface Runtime {
  readonly config: CoreConfig;
  readonly redis: Redis;
}

export interface LambdaRuntimeOptions {
  /** The Redis client name (CLIENT SETNAME). Defaults to `lambda-local`. */
  readonly name?: string;
  /** Where the handlers log. Defaults to a Powertools Logger (service `realtime`) at the config's level. */
  readonly logger?: Logger;
  /**
   * The fan-out queue. Defaults to SQS FIFO at the config's `wsFanoutQueueUrl`, else none (the
   * local stack passes its in-process queue).
   */
  readonly queue?: WorkQueue;
  /**
   * The environment AWS calls read: credentials (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`),
   * `AWS_REGION` and endpoint overrides (`AWS_ENDPOINT_URL_SECRETS_MANAGER`). Defaults to `process.env`.
   */
  readonly env?: NodeJS.ProcessEnv;
}

/**
 * What the handlers of one deployment share: the parsed configuration, the logger, and the clients
 * (Redis, the management API), created on first use and reused across invocations. On AWS there is
 * one per Lambda container, built from the environment at cold start ({@link environmentRuntime});
 * the local stack builds one per stack from config objects, so stacks with different settings run
 * side by side in one process.
 */
export class LambdaRuntime {
  readonly logger: Logger;
  private readonly name: string;
  private starting?: Promise<Runtime>;
  private started?: Runtime;
  private readonly env: NodeJS.ProcessEnv;
  private poster?: ManagementApi & { destroy(): void };
  private queue?: WorkQueue & { destroy?(): void };

  constructor(
    readonly config: LambdaConfig,
    options: LambdaRuntimeOptions = {},
  ) {
    this.name = options.name ?? 'lambda-local';
    this.queue = options.queue;
    this.env = options.env ?? process.env;
    this.logger = options.logger ?? new Logger({ serviceName: 'realtime', ...(config.logLevel ? { logLevel: config.logLevel } : {}) });
  }

  /** Parses the environment (names from `contract/env.ts`); throws one ConfigError line naming every bad key. */
  static fromEnv(env: NodeJS.ProcessEnv = process.env): LambdaRuntime {
    // AWS_LAMBDA_FUNCTION_NAME is AWS's own variable, not part of our contract.
    return new LambdaRuntime(lambdaConfigFromEnv(env), { name: `lambda-${env.AWS_LAMBDA_FUNCTION_NAME ?? 'local'}`, env });
  }

  /** The core configuration. */
  get core(): CoreConfig {
    return this.config.core;
  }

  /**
   * The Redis client, connected. A failed start is not cached, so the next invocation tries again.
   */
  clients(): Promise<Runtime> {
    this.starting ??= (async () => {
      const config = this.config.core;
      const password = config.redisPassword ?? (config.redisSecretArn ? await secretPassword(config.redisSecretArn, { env: this.env }) : undefined);
      const redis = createRedis({ url: config.redisUrl, password, name: this.name });
      try {
        await waitReady(redis, 5000);
      } catch (err) {
        redis.disconnect();
        throw err;
      }
      this.started = { config, redis };
      return this.started;
    })().catch((err) => {
      this.starting = undefined;
      throw err;
    });
    return this.starting;
  }

  /**
   * The management API client: one per container, the lean SigV4 poster on keep-alive sockets (as
   * many as posts in flight), for posts and revocations' DeleteConnection. Undefined without an endpoint.
   */
  postClient(): ManagementApi | undefined {
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
    };
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

  /** Closes the clients (the local stack calls it when it stops; Lambda never does). */
  async close(): Promise<void> {
    const current = this.starting;
    this.starting = undefined;
    this.started = undefined;
    this.poster?.destroy();
    this.poster = undefined;
    if (this.queue instanceof SqsFifoQueue) {
      this.queue.destroy();
      this.queue = undefined;
    }
    const rt = await current?.catch(() => undefined);
    rt?.redis.disconnect();
  }
}

let fromEnvironment: LambdaRuntime | undefined;

/**
 * The runtime of this Lambda container, built from the environment on first call (at module load
 * of each entry, that is cold start): a bad variable fails the init with one line naming it.
 */
export function environmentRuntime(): LambdaRuntime {
  fromEnvironment ??= LambdaRuntime.fromEnv(process.env);
  return fromEnvironment;
}

/** The clients of the environment runtime (see {@link LambdaRuntime.clients}). */
export function getRuntime(): Promise<Runtime> {
  return environmentRuntime().clients();
}

/** Closes the environment runtime's clients, if it was built. */
export async function closeRuntime(): Promise<void> {
  const rt = fromEnvironment;
  fromEnvironment = undefined;
  await rt?.close();
}
