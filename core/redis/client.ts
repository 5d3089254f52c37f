import { createHash } from 'node:crypto';
import Redis, { Cluster, type ClusterOptions, type RedisOptions } from 'ioredis';

/**
 * The narrow slice of a Redis client the core needs. ioredis satisfies it;
 * nothing in core depends on more than this.
 */
export interface RedisLike {
  evalsha(sha: string, numKeys: number, ...args: (string | number)[]): Promise<unknown>;
  eval(script: string, numKeys: number, ...args: (string | number)[]): Promise<unknown>;
  set(key: string, value: string, ex: 'EX', seconds: number): Promise<unknown>;
  getdel(key: string): Promise<string | null>;
  get(key: string): Promise<string | null>;
  ping(): Promise<string>;
}

/** A Lua script run by EVALSHA, loaded with EVAL on NOSCRIPT (after a restart or failover). */
export class Script {
  readonly sha: string;
  constructor(readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }

  async run(redis: RedisLike, keys: string[], args: (string | number)[]): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (err instanceof Error && err.message.startsWith('NOSCRIPT')) {
        return redis.eval(this.source, keys.length, ...keys, ...args);
      }
      throw err;
    }
  }
}

export interface RedisConnectOptions {
  readonly url: string;
  readonly password?: string;
  /** Connection name shown by CLIENT LIST. */
  readonly name?: string;
  /** Fail commands at once while disconnected instead of queueing them. Defaults to true. */
  readonly failFast?: boolean;
}

/**
 * True for a `READONLY` error reply: the node this connection is on was demoted to a replica. On an
 * ElastiCache failover the primary endpoint's DNS name moves to the promoted replica, but TCP
 * connections opened before stay on the old primary, whose every write then fails this way.
 */
export function isReadOnlyError(err: unknown): boolean {
  return err instanceof Error && err.message.startsWith('READONLY');
}

/**
 * Creates an ioredis client for a `redis://` or `rediss://` URL (TLS for rediss, as ElastiCache
 * in-transit encryption needs). Commands fail fast while Redis is unreachable so callers answer
 * 503 instead of hanging; the client keeps reconnecting with capped backoff.
 *
 * After a failover the client reconnects by itself on the first `READONLY` reply: a new connection
 * resolves the endpoint again and reaches the new primary. Without `failFast` the command that met
 * `READONLY` waits in the offline queue and is resent there, so it succeeds. With `failFast` it is
 * rejected with that `READONLY` error, which maps to `unavailable` (503 + Retry-After): a resend
 * would find the connection closing and fail anyway, only with a message that hides the cause.
 * Commands after the reconnect go to the new primary.
 */
export function createRedis(opts: RedisConnectOptions): Redis {
  const failFast = opts.failFast ?? true;
  const options: RedisOptions = {
    connectionName: opts.name,
    maxRetriesPerRequest: failFast ? 1 : null,
    enableOfflineQueue: !failFast,
    connectTimeout: 5000,
    commandTimeout: failFast ? 5000 : undefined,
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
    // 1: reconnect and reject the command; 2: reconnect and resend it (through the offline queue).
    reconnectOnError: (err) => (isReadOnlyError(err) ? (failFast ? 1 : 2) : false),
    lazyConnect: false,
  };
  if (opts.password) options.password = opts.password;
  const client = new Redis(opts.url, options);
  // Errors surface through command rejections and the status; an unhandled 'error' event would crash.
  client.on('error', () => undefined);
  return client;
}

export interface RedisClusterConnectOptions extends RedisConnectOptions {
  /**
   * The client subscribes (sharded pub/sub): one subscriber connection per shard primary (ioredis
   * `shardedSubscribers`). Defaults to false.
   */
  readonly subscriber?: boolean;
}

/** How often a cluster subscriber reads the slot map again without being told to (milliseconds). */
export const SUBSCRIBER_SLOTS_REFRESH_MS = 5000;

/**
 * Creates an ioredis `Cluster` client for a Redis Cluster (ElastiCache cluster mode enabled): `url` is the
 * configuration endpoint (or any node), from which the client learns the shards with `CLUSTER SLOTS` and follows
 * `MOVED`/`ASK` redirections during a failover or an online resharding. TLS for `rediss://`; the node addresses the
 * cluster reports are used as given, and TLS checks the configuration endpoint's name (ElastiCache's certificate covers
 * its nodes' names). Commands fail fast while a shard is unreachable, as {@link createRedis}.
 */
export function createRedisCluster(opts: RedisClusterConnectOptions): Cluster {
  const u = new URL(opts.url);
  const tls = u.protocol === 'rediss:';
  const failFast = opts.failFast ?? true;
  const redisOptions: RedisOptions = {
    connectionName: opts.name,
    connectTimeout: 5000,
    commandTimeout: failFast ? 5000 : undefined,
    maxRetriesPerRequest: failFast ? 1 : null,
    ...(opts.password ? { password: opts.password } : {}),
    ...(tls ? { tls: { servername: u.hostname } } : {}),
  };
  const options: ClusterOptions = {
    redisOptions,
    enableOfflineQueue: !failFast,
    shardedSubscribers: opts.subscriber === true,
    // A subscriber learns of a moved slot from an unsolicited SUNSUBSCRIBE (core/redis/subscriber.ts) and refreshes
    // its slot map then; a refresh that read a node not yet told of the move is followed by this one. ioredis
    // refreshes on no timer by default, whatever its type declarations say.
    ...(opts.subscriber ? { slotsRefreshInterval: SUBSCRIBER_SLOTS_REFRESH_MS } : {}),
    clusterRetryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
    // ElastiCache with TLS: connect to the names the cluster reports, not addresses resolved here (ioredis README).
    dnsLookup: (address, callback) => callback(null, address),
    slotsRefreshTimeout: 2000,
  };
  const client = new Cluster([{ host: u.hostname, port: Number(u.port || 6379) }], options);
  client.on('error', () => undefined);
  return client;
}

/**
 * The client a runtime makes for its configuration: {@link createRedis} for `single`, {@link createRedisCluster} for
 * `cluster` (REDIS_URL the configuration endpoint). A `Cluster` routes each command and script by its keys' slot and
 * answers the commands the runtime sends (every script single-slot, test/runtime/script-slots.test.ts), so the runtime
 * holds it as a `Redis`: the one place that type is widened.
 */
export function createRedisFor(mode: 'single' | 'cluster' | undefined, opts: RedisClusterConnectOptions): Redis {
  if (mode === 'cluster') return createRedisCluster(opts) as unknown as Redis;
  const { subscriber: _subscriber, ...single } = opts;
  return createRedis(single);
}

/** Whether a client is an ioredis `Cluster` (made by {@link createRedisCluster} or {@link createRedisFor}). */
export function isCluster(conn: unknown): conn is Cluster {
  return (conn as Partial<Cluster>).isCluster === true;
}

/** Resolves when the client is ready, or rejects after `timeoutMs`. */
export function waitReady(client: Redis | Cluster, timeoutMs = 10_000): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`Redis not reachable within ${timeoutMs} ms (ETIMEDOUT)`));
    }, timeoutMs);
    const onReady = () => {
      cleanup();
      resolve();
    };
    const cleanup = () => {
      clearTimeout(timer);
      client.off('ready', onReady);
    };
    client.on('ready', onReady);
  });
}
