import { Logger } from '@aws-lambda-powertools/logger';
import type Redis from 'ioredis';
import type { CoreConfig } from '../../core/config';
import type { WorkQueue } from '../../core/fanout-queue';
import { createRedisFor, waitReady } from '../../core/redis/client';
import { secretPassword } from '../../core/aws/secrets';
import { LambdaInvoker, lambdaEndpoint } from '../../core/aws/lambda-invoke';
import { runtimeCredentials } from '../../core/aws/signer';
import { hasHooks, type HookInvoker } from '../../core/hooks';
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
  /**
   * Where the namespaces' hooks are asked. Defaults to Lambda's Invoke API (signed with the function's role, in
   * `AWS_REGION`, `AWS_ENDPOINT_URL_LAMBDA` to override) when a namespace has hooks, else none.
   */
  readonly hooks?: HookInvoker;
  /**
   * A started Redis client to use instead of creating one from the config (a test's or a local stack's client, e.g. an
   * ioredis `Cluster` for a Redis Cluster). The runtime does not close it. Defaults to a client for `redisUrl`.
   */
  readonly redis?: Redis;
}

/**
 * What the handlers of one deployment share: the parsed configuration, the logger, and the Redis
 * client, created on first use and reused across invocations. On AWS there is one per Lambda
 * container, built from the environment at cold start ({@link environmentRuntime}); the local stack
 * builds one per stack from config objects, so stacks with different settings run side by side in
 * one process.
 *
 * The handlers that post to WebSocket connections take a {@link FanoutRuntime}
 * (`fanout-runtime.ts`), which adds the management API and the fan-out queue. The split keeps that
 * code out of the bundles on every connection's path (ticket issuer, authorizer, `$connect`,
 * `$disconnect`; see `scripts/bundle-budgets.ts`).
 */
export class LambdaRuntime {
  readonly logger: Logger;
  private readonly name: string;
  private starting?: Promise<Runtime>;
  /** The clients once started (for subclasses that post without waiting on Redis). */
  protected started?: Runtime;
  protected readonly env: NodeJS.ProcessEnv;
  protected queue?: WorkQueue & { destroy?(): void };
  private invoker?: HookInvoker;
  private readonly given?: Redis;

  constructor(
    readonly config: LambdaConfig,
    options: LambdaRuntimeOptions = {},
  ) {
    this.name = options.name ?? 'lambda-local';
    this.queue = options.queue;
    this.invoker = options.hooks;
    this.given = options.redis;
    this.env = options.env ?? process.env;
    this.logger = options.logger ?? new Logger({ serviceName: 'realtime', ...(config.logLevel ? { logLevel: config.logLevel } : {}) });
  }

  /**
   * Parses the environment (names from `contract/settings.ts`); throws one ConfigError line naming every
   * bad key. Builds the class it is called on (`FanoutRuntime.fromEnv` builds a FanoutRuntime).
   */
  static fromEnv<R extends LambdaRuntime>(this: RuntimeClass<R>, env: NodeJS.ProcessEnv = process.env): R {
    return runtimeFromEnv(this, env);
  }

  /** The hooks' invoker (core/hooks.ts), built on first use; none when no namespace has a hook. */
  get hooks(): HookInvoker | undefined {
    if (!this.invoker && hasHooks(this.config.core.namespaces)) {
      const region = this.env.AWS_REGION ?? this.env.AWS_DEFAULT_REGION ?? 'us-east-1';
      this.invoker = new LambdaInvoker({ credentials: runtimeCredentials(this.env), region, endpoint: lambdaEndpoint(region, this.env) });
    }
    return this.invoker;
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
      if (this.given) return (this.started = { config, redis: this.given });
      const password = config.redisPassword ?? (config.redisSecretArn ? await secretPassword(config.redisSecretArn, { env: this.env }) : undefined);
      const redis = createRedisFor(config.redisMode, { url: config.redisUrl, password, name: this.name });
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

  /** Closes the clients (the local stack calls it when it stops; Lambda never does). */
  async close(): Promise<void> {
    const current = this.starting;
    this.starting = undefined;
    this.started = undefined;
    const rt = await current?.catch(() => undefined);
    if (rt?.redis !== this.given) rt?.redis.disconnect();
  }
}

/** A runtime class: {@link LambdaRuntime} or one that extends it. */
export type RuntimeClass<R extends LambdaRuntime> = new (config: LambdaConfig, options?: LambdaRuntimeOptions) => R;

function runtimeFromEnv<R extends LambdaRuntime>(kind: RuntimeClass<R>, env: NodeJS.ProcessEnv): R {
  // AWS_LAMBDA_FUNCTION_NAME is AWS's own variable, not part of our contract.
  return new kind(lambdaConfigFromEnv(env), { name: `lambda-${env.AWS_LAMBDA_FUNCTION_NAME ?? 'local'}`, env });
}

const fromEnvironment = new Map<RuntimeClass<LambdaRuntime>, LambdaRuntime>();

/**
 * The runtime of this Lambda container, built from the environment on first call (at module load
 * of each entry, that is cold start): a bad variable fails the init with one line naming it. The
 * fan-out handlers ask for a {@link FanoutRuntime} (`environmentRuntime(FanoutRuntime)`).
 */
export function environmentRuntime(): LambdaRuntime;
export function environmentRuntime<R extends LambdaRuntime>(kind: RuntimeClass<R>): R;
export function environmentRuntime(kind: RuntimeClass<LambdaRuntime> = LambdaRuntime): LambdaRuntime {
  let rt = fromEnvironment.get(kind);
  if (!rt) {
    rt = runtimeFromEnv(kind, process.env);
    fromEnvironment.set(kind, rt);
  }
  return rt;
}

/** Closes the environment runtimes' clients, those that were built. */
export async function closeRuntime(): Promise<void> {
  const built = [...fromEnvironment.values()];
  fromEnvironment.clear();
  await Promise.all(built.map((rt) => rt.close()));
}
