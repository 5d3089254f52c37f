import type { Server } from 'node:http';
import type Redis from 'ioredis';
import type { Fanout, ResumeFanout } from '../core/publishing';
import pino, { type Logger } from 'pino';
import { runtimeCredentials, type CredentialProvider } from '../core/aws/signer';
import { TargetHealthClient } from '../core/aws/elb';
import type { WorkQueue } from '../core/fanout-queue';
import { Keys } from '../core/redis/keys';
import { SqsFifoQueue } from '../core/aws/sqs';
import { LambdaInvoker, lambdaEndpoint } from '../core/aws/lambda-invoke';
import { hasHooks, type HookInvoker } from '../core/hooks';
import { EventBridgeBus } from '../core/aws/eventbridge';
import type { EventBus } from '../core/backend-events';
import type { KnownEpoch } from '../core/tickets';
import { createRedisFor, waitReady } from '../core/redis/client';
import { parseRevocation } from '../core/revocation';
import { Admission } from './admission';
import type { ServiceConfig } from './config';
import { Cors } from './cors';
import { apiGatewayDelivery } from './api-gateway-fanout';
import { watchTaskStop } from './ecs';
import { FlushWindow } from './flush-window';
import { ClientMetricsEndpoint } from './client-metrics';
import { HttpEdge } from './http-edge';
import { DEFAULT_TAIL_LIMITS, Hub } from './hub';
import { ServiceMetrics } from './metrics';
import { listen, shutdown } from './net';
import { SessionEngine } from './session-engine';
import { TaskEvents } from './occupancy';
import { TaskPresence } from './presence';
import { RedisPresence } from '../core/redis/presence';
import { presenceOn } from '../core/presence-gateway';
import { WsEdge } from './ws-edge';
import { RedisSubscriber } from '../core/redis/subscriber';

export interface RealtimeServerDeps {
  /** Command connection (tickets, history). Defaults to a new fail-fast client for config.core.redisUrl. */
  readonly redis?: Redis;
  /** Subscriber connection. Defaults to a new client for config.core.redisUrl. */
  readonly subscriber?: Redis;
  readonly logger?: Logger;
  /** Milliseconds since the epoch. Defaults to Date.now. */
  readonly now?: () => number;
  /**
   * Delivery to API Gateway WebSocket connections of publishes made on `/live` (mode `both`). Defaults to the fan-out
   * queue's ({@link apiGatewayDelivery}) when there is one (`fanoutQueue`, or `wsFanoutQueueUrl` in the config), else none.
   */
  readonly fanout?: Fanout;
  /** The API Gateway fan-out queue. Defaults to SQS FIFO at `wsFanoutQueueUrl` when set (signed with `credentials`), else none. */
  readonly fanoutQueue?: WorkQueue;
  /**
   * Credentials of the task's own AWS calls (SendMessageBatch, DescribeTargetHealth). Defaults to the environment's,
   * else the ECS container credentials endpoint's (the task role), refreshed before they expire (`core/aws/signer.ts`).
   */
  readonly credentials?: CredentialProvider;
  /** Where AWS endpoint overrides are read (`AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2`). Defaults to `process.env`. */
  readonly env?: NodeJS.ProcessEnv;
  /**
   * Where the namespaces' publish hooks are asked for `/live` publishes. Defaults to Lambda's Invoke API (signed with
   * `credentials`, `AWS_REGION`, `AWS_ENDPOINT_URL_LAMBDA`) when a namespace has hooks, else none.
   */
  readonly hooks?: HookInvoker;
  /** Batches socket writes (SSE and `/live`). Defaults to one built from WRITE_DELAY_MS, MAX_WRITE_DELAY_MS and LATENCY_BUDGET_MS. */
  readonly window?: FlushWindow;
  /** The backend events' bus. Defaults to EventBridge `PutEvents` on EVENT_BUS_NAME when set (signed with `credentials`), else none. */
  readonly eventBus?: EventBus;
  /** Run the occupancy and relay timers. Defaults to true; tests drive `events.tick()` and `events.relayOnce()` themselves. */
  readonly eventTimers?: boolean;
}

/**
 * The realtime server of a Fargate task (the runtime behind the `SseService` construct of lib/):
 * `GET /events` (SSE streams), `GET /poll` (long-poll fallback), `GET /live` (WebSocket upgrades), `GET /healthz`. It composes the
 * parts and owns their life cycle (listen, drain, close); each part has one role:
 * - {@link HttpEdge} (http-edge.ts): routes, JSON errors; with cors.ts, health.ts and admission.ts;
 * - {@link SessionEngine} (session-engine.ts): sessions of every transport, their subscriptions, catch-up,
 *   heartbeats, recycling, slow readers, revocation, drain;
 * - {@link Hub} (hub.ts): this process's listeners and its one Redis subscription per channel;
 * - transports (sse-transport.ts, poll-transport.ts, ws-transport.ts) behind transport.ts; the SSE format in sse-encoding.ts;
 * - {@link WsEdge} (ws-edge.ts): the `/live` upgrade and the client's frames (the API Gateway protocol).
 * History in Redis makes any instance able to serve any reconnect.
 */
export class RealtimeServer {
  readonly server: Server;
  readonly hub: Hub;
  readonly redis: Redis;
  readonly subscriber: Redis;
  readonly metrics: ServiceMetrics;
  private readonly engine: SessionEngine;
  /** The WebSocket endpoint (`/live`). */
  readonly ws: WsEdge;
  private readonly log: Logger;
  private readonly keys: Keys;
  /** The clients this server made (and so closes); a client passed in is its caller's. */
  private readonly ownsRedis: boolean;
  private readonly ownsSubscriber: boolean;
  private heartbeat?: NodeJS.Timeout;
  private draining = false;
  private drained?: Promise<void>;
  private stopWatch?: () => void;
  private readonly credentials: () => CredentialProvider;
  private readonly env: NodeJS.ProcessEnv;
  /** The SQS queue this server created (closed with it). */
  private ownQueue?: SqsFifoQueue;
  private ownInvoker?: LambdaInvoker;
  /** Backend events (BACKEND_EVENTS): this task's channel occupancy, the sweeps and the relay to the bus. */
  readonly events?: TaskEvents;
  private ownBus?: EventBridgeBus;
  /** Presence (a namespace with `presence` on): this task's holder, its lease and the sweeps. */
  readonly presence?: TaskPresence;
  private readonly eventTimers: boolean;

  constructor(
    readonly config: ServiceConfig,
    deps: RealtimeServerDeps = {},
  ) {
    const url = config.core.redisUrl;
    const password = config.core.redisPassword;
    this.ownsRedis = !deps.redis;
    this.ownsSubscriber = !deps.subscriber;
    const mode = config.core.redisMode;
    this.redis = deps.redis ?? createRedisFor(mode, { url, password, name: 'sse-commands' });
    this.subscriber = deps.subscriber ?? createRedisFor(mode, { url, password, name: 'sse-subscriber', failFast: false, subscriber: true });
    this.log = deps.logger ?? pino({ level: config.logLevel });
    const now = deps.now ?? Date.now;
    this.keys = new Keys(config.core.keyPrefix);
    this.env = deps.env ?? process.env;
    let credentials = deps.credentials;
    this.credentials = () => (credentials ??= runtimeCredentials(this.env));
    if (!deps.fanoutQueue && config.wsFanoutQueueUrl) this.ownQueue = new SqsFifoQueue(config.wsFanoutQueueUrl, { credentials: () => this.credentials()() });
    const fanoutQueue = deps.fanoutQueue ?? this.ownQueue;
    const queued = fanoutQueue ? apiGatewayDelivery({ redis: this.redis, config: config.core, queue: fanoutQueue, shards: config.wsFanoutShards }) : undefined;
    const fanout = deps.fanout ?? queued?.fanout;
    const resumeFanout: ResumeFanout | undefined = deps.fanout ? undefined : queued?.resumeFanout;
    this.hub = new Hub(new RedisSubscriber(this.subscriber, this.keys), config.maxChannelsPerTask, {
      ...DEFAULT_TAIL_LIMITS,
      maxEvents: Math.min(DEFAULT_TAIL_LIMITS.maxEvents, config.replayMaxEvents),
    });
    this.eventTimers = deps.eventTimers ?? true;
    if (config.core.backendEvents) {
      if (!deps.eventBus && config.eventBusName) this.ownBus = new EventBridgeBus({ eventBusName: config.eventBusName, credentials: () => this.credentials()(), env: this.env });
      this.events = new TaskEvents({ redis: this.redis, config: config.core, debounceMs: config.occupancyDebounceMs, bus: deps.eventBus ?? this.ownBus, now, log: this.log });
      this.hub.occupancy = this.events;
    }
    this.metrics = new ServiceMetrics(config.metricsNamespace, () => {
      const deliveries = this.hub.deliveries;
      this.hub.deliveries = 0;
      return { open: this.engine.streams.size + this.engine.sockets.size, deliveries };
    });
    if (presenceOn(config.core.namespaces)) {
      // Presence events reach the API Gateway connections through the same delivery as a `/live` publish (the queue).
      const logger = { warn: (message: string, attributes: Record<string, unknown>) => this.log.warn(attributes, message) };
      this.presence = new TaskPresence({ presence: new RedisPresence(this.redis, config.core, { fanout, logger }), now, log: this.log, graceMs: config.core.presenceGraceMs });
    }
    this.engine = new SessionEngine({ config, redis: this.redis, hub: this.hub, metrics: this.metrics, log: this.log, now, presence: this.presence });
    // Revocations reach every instance on the control channel (ioredis resubscribes it after a reconnect).
    this.subscriber.on('message', (channel: string, message: string) => {
      if (channel !== this.keys.revokeControl) return;
      const r = parseRevocation(message);
      if (r) this.engine.revoked(r.sub, r.epoch);
    });
    const cors = new Cors(config.allowedOrigins);
    const state = {
      draining: () => this.draining,
      redisUp: () => this.redisUp,
    };
    // On one Redis node (not a cluster, where PUBLISH crosses the cluster bus out of this task's sight) the task vouches
    // for a user's epoch when it has heard every revocation since the ticket was issued (service/revocations.ts).
    // The same condition lets a burst's ticket redemptions share a script run (service/ticket-batch.ts): on a cluster
    // their keys hash to any slot.
    const oneNode = mode !== 'cluster';
    if (oneNode) this.watchControl();
    const knownEpoch: KnownEpoch | undefined = oneNode ? (sub, issuedAt) => this.engine.revocations.epochFor(sub, issuedAt) : undefined;
    const admission = new Admission({ config, redis: this.redis, hub: this.hub, cors, metrics: this.metrics, now, open: () => this.engine.size, knownEpoch, batchTickets: oneNode, ...state });
    const health = {
      ...state,
      ping: () => this.redis.ping().then(() => true, () => false),
      connections: () => this.engine.streams.size,
      polls: () => this.engine.polls.size,
      now,
    };
    const window = deps.window ?? new FlushWindow({ writeDelayMs: config.writeDelayMs, maxWriteDelayMs: config.maxWriteDelayMs, latencyBudgetMs: config.latencyBudgetMs });
    const clientMetrics = new ClientMetricsEndpoint({ config, redis: this.redis, reports: this.metrics.clients, now });
    const edge = new HttpEdge({ config, admission, engine: this.engine, cors, window, health, log: this.log, redis: this.redis, clientMetrics });
    this.server = edge.server;
    this.ws = new WsEdge(this.server, { config, redis: this.redis, admission, engine: this.engine, window, log: this.log, fanout, resumeFanout, hooks: deps.hooks ?? (hasHooks(config.core.namespaces) ? this.lambdaInvoker() : undefined) });
  }

  /** Bumped whenever the subscriber's connection closes: a SUBSCRIBE answered after that vouches for nothing sent before. */
  private controlBreaks = 0;
  /** Set by {@link watchControl}: the control channel's subscription is watched (one Redis node). */
  private watchingControl = false;

  /**
   * Keeps `engine.revocations` told whether the control channel (`ctl:revoke`) has been subscribed without a break:
   * down at every close of the subscriber's connection, up again when a SUBSCRIBE sent after the reconnect is answered
   * (ioredis resubscribes by itself; the answer to this one dates it).
   */
  private watchControl(): void {
    this.watchingControl = true;
    this.subscriber.on('close', () => {
      this.controlBreaks++;
      this.engine.revocations.controlDown();
    });
    this.subscriber.on('ready', () => void this.subscribeControl());
  }

  /** SUBSCRIBEs the control channel; once answered with no break since it was sent, the watched subscription is up. */
  private subscribeControl(): Promise<void> {
    const breaks = this.controlBreaks;
    return this.subscriber.subscribe(this.keys.revokeControl).then(
      () => {
        if (this.watchingControl && breaks === this.controlBreaks) this.engine.revocations.controlUp();
      },
      () => undefined,
    );
  }

  /** The hooks' invoker of this task (Lambda's Invoke API with the task role), closed with the server. */
  private lambdaInvoker(): LambdaInvoker {
    const region = this.env.AWS_REGION ?? this.env.AWS_DEFAULT_REGION ?? 'us-east-1';
    this.ownInvoker = new LambdaInvoker({ credentials: () => this.credentials()(), region, endpoint: lambdaEndpoint(region, this.env) });
    return this.ownInvoker;
  }

  /** Number of open WebSockets on `/live`. */
  get sockets(): number {
    return this.engine.sockets.size;
  }

  /** Number of open SSE streams. */
  get connections(): number {
    return this.engine.streams.size;
  }

  /** Number of long polls waiting for an answer. */
  get polls(): number {
    return this.engine.polls.size;
  }

  /**
   * Starts listening; resolves with the bound port. Redis is not required: the server waits up to
   * `redisWaitMs` for it (so the first requests find it ready), then listens anyway and answers
   * streams with `retry:` (API clients: 503) until it is reachable. `/healthz` answers 200 meanwhile.
   */
  async listen(port = this.config.port, host = this.config.host, redisWaitMs = 5000): Promise<number> {
    await Promise.all([waitReady(this.redis, redisWaitMs), waitReady(this.subscriber, redisWaitMs)]).catch(() => {
      this.log.warn({ redisWaitMs }, 'redis not reachable yet; listening anyway (streams are told to retry until it is)');
    });
    // Revocations reach every instance on the control channel; ioredis resubscribes it after a reconnect
    // and queues it while Redis is away (the service listens without Redis).
    const control = this.subscribeControl();
    if (this.subscriber.status === 'ready') await control;
    const bound = await listen(this.server, port, host);
    this.heartbeat = setInterval(() => this.engine.beat(), this.config.heartbeatMs);
    this.heartbeat.unref();
    this.metrics.start(this.config.metricsIntervalMs);
    if (this.eventTimers) this.events?.start();
    if (this.eventTimers) this.presence?.start();
    if (this.config.ecsMetadataUri) {
      const arn = this.config.targetGroupArn;
      const client = arn ? new TargetHealthClient({ targetGroupArn: arn, credentials: this.credentials(), env: this.env }) : undefined;
      this.stopWatch = watchTaskStop({
        metadataUri: this.config.ecsMetadataUri,
        intervalMs: this.config.stopPollMs,
        log: this.log,
        // The target is the task's private IP on the container port (the port this server listens on).
        targetHealth: client ? { port: this.config.port || bound, intervalMs: this.config.targetHealthPollMs, describe: (id, p) => client.describe(id, p) } : undefined,
        onStopping: (signal) => {
          this.log.info({ signal }, signal === 'metadata' ? 'ecs task metadata: DesiredStatus STOPPED; draining before SIGTERM' : 'target health: draining; draining before SIGTERM');
          void this.drain();
        },
      });
    }
    this.log.info({ port: bound }, 'sse service listening');
    return bound;
  }

  /** True once a drain has started: new streams and polls are turned away, `/healthz` says `draining`. */
  get isDraining(): boolean {
    return this.draining;
  }

  /** True when both Redis connections (commands and the subscriber) are ready. */
  get redisUp(): boolean {
    return this.hub.ready && this.redis.status === 'ready';
  }

  /**
   * Graceful stop. Started by the ECS task metadata (`DesiredStatus: STOPPED`, while the ALB still
   * holds the streams during its deregistration delay) or by SIGTERM, whichever comes first; a
   * second call returns the same promise. New streams, polls and upgrades are turned away (an
   * EventSource with 200 + `retry:`), waiting polls answer at once, and every stream and socket is
   * told to reconnect (jittered `retry:`, or 1001 with `retryMs`) and closed, spread over the first
   * half of `deadlineMs` so the other tasks are not hit by one wave. Clients resume elsewhere from
   * their `Last-Event-ID` (sockets: `since`). Resolves when all of them are gone or `deadlineMs`
   * passed; the server keeps answering `/healthz` until `close()`.
   */
  drain(deadlineMs = this.config.drainTimeoutMs): Promise<void> {
    this.drained ??= this.runDrain(deadlineMs);
    return this.drained;
  }

  private async runDrain(deadlineMs: number): Promise<void> {
    this.draining = true;
    this.stopWatch?.();
    await this.engine.drain(deadlineMs);
  }

  /** Closes every stream and poll, the server and (when owned) the Redis connections. */
  async close(): Promise<void> {
    this.draining = true;
    this.stopWatch?.();
    clearInterval(this.heartbeat);
    this.metrics.stop();
    this.engine.endAll();
    await shutdown(this.server);
    await this.events?.close().catch((err: Error) => this.log.warn({ err: err.message }, 'occupancy: could not give the channels up; the sweep will'));
    await this.presence?.close().catch((err: Error) => this.log.warn({ err: err.message }, 'presence: could not end the lease; the sweep will'));
    this.ownQueue?.destroy();
    this.ownInvoker?.destroy();
    this.ownBus?.destroy();
    if (this.ownsRedis) this.redis.disconnect();
    if (this.ownsSubscriber) this.subscriber.disconnect();
  }

  /**
   * Ends the streams, polls and sockets of `sub` whose session predates revocation `epoch`. Streams
   * end without a new `retry:` hint; their reconnect is refused (401), which ends a native EventSource
   * for good. Polls answer 401; sockets close with 1008.
   */
  closeUser(sub: string, epoch: number): number {
    return this.engine.revocations.revoke(sub, epoch);
  }
}
