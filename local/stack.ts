import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import type { Logger } from 'pino';
import { CORE_ENV, LAMBDA_ENV } from '../contract/settings';
import { WS_ACTIONS } from '../contract/ws';
import { parseNamespaces, type CoreConfig } from '../core/config';
import { lambdaConfigFromEnv, type LambdaConfig, type LambdaSettings } from '../lambda/shared/config';
import { createPublishHandler } from '../lambda/handlers/publish';
import { createRevokeHandler } from '../lambda/handlers/revoke';
import { createHistoryHandler } from '../lambda/handlers/history';
import { LambdaInvoker } from '../core/aws/lambda-invoke';
import { LocalLambda, type LocalFunction } from './lambda-invoke';
import { createTicketIssuer } from '../lambda/handlers/ticket-issuer';
import { createWsAuthorizer } from '../lambda/handlers/ws-authorizer';
import { createWsConnect } from '../lambda/handlers/ws-connect';
import { createWsDisconnect } from '../lambda/handlers/ws-disconnect';
import { createWsMessage } from '../lambda/handlers/ws-message';
import { createPresenceSweeper, type SweeperContext } from '../lambda/handlers/presence-sweeper';
import { presenceOn, type GatewaySweepResult } from '../core/presence-gateway';
import { createFanoutDeadLetterHandler } from '../lambda/handlers/fanout-dead-letters';
import { createFanoutWorker } from '../lambda/handlers/fanout-worker';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { LocalFifoQueue, type LocalQueueOptions, type QueueConsumer } from './queue';
import { FanoutRuntime } from '../lambda/shared/fanout-runtime';
import { parseTrustedPrincipals } from '../core/principals';
import { serviceConfigFromEnv } from '../service/config';
import { listen, shutdown } from '../service/net';
import { RealtimeServer } from '../service/realtime-server';
import { guardServer, LocalGuard } from './guard';
import { demoPages } from './demo/pages';
import type { LocalFaults } from './faults';
import { createHttpApi, LOCAL_IAM_ARN, type HttpHandler } from './http-api';
import type { LocalSignatureOptions } from './sigv4';
import { RedisServer } from './redis';
import { LocalEventBridge } from './eventbridge';
import { EventBridgeBus } from '../core/aws/eventbridge';
import type { WsEvent, WsResult } from '../lambda/shared/ws';
import { startWsGateway, type AuthorizerHandler, type WsGateway, type WsGatewayHandlers, type WsGatewayOptions } from './ws-gateway';

/** The stack name under which the local outputs are written (the shape of `cdk deploy --outputs-file`). */
export const LOCAL_STACK_NAME = 'Realtime-local';

export interface LocalStackOptions {
  /** Port of the HTTP API stand-in (POST /tickets, POST /publish). Defaults to 0 (a free port). */
  readonly apiPort?: number;
  /** Port of the SSE service. Defaults to 0 (a free port). */
  readonly ssePort?: number;
  /** Port of the WebSocket gateway (and its management API). Defaults to 0 (a free port). */
  readonly wsPort?: number;
  /** Settings of the WebSocket gateway (timeouts, management API throttling). Defaults to API Gateway's. */
  readonly wsGateway?: Omit<WsGatewayOptions, 'handlers' | 'host' | 'port'>;
  /** Host to bind. Defaults to 127.0.0.1: the local stack trusts `x-local-user` and must not be exposed. */
  readonly host?: string;
  /**
   * Origins of web pages (e.g. `http://localhost:5173`, your app's dev server) that may call the
   * stack from a browser: mint tickets, publish, open streams and WebSockets, with credentials. The
   * stack's own origins are always allowed; any other page's requests get 403 `origin_not_allowed`.
   * `*` is refused. Defaults to none.
   */
  readonly allowedOrigins?: readonly string[];
  /** Redis to use. Defaults to the REDIS_URL environment variable, else a private redis-server on a free port. */
  readonly redisUrl?: string;
  /**
   * Settings in the environment's vocabulary (names from `contract/settings.ts`, e.g. HEARTBEAT_MS,
   * NAMESPACES_JSON, TRUSTED_PRINCIPALS), over the process environment. They are parsed into this
   * stack's config objects, like a deployment's environment at cold start; `process.env` is never
   * written, so stacks with different settings run side by side. Defaults to none.
   */
  readonly env?: Record<string, string>;
  /**
   * Core settings of this stack's service and handlers, over those parsed from `env` (e.g.
   * `{ keyPrefix: 'a:', namespaces }`). Defaults to none.
   */
  readonly core?: Partial<CoreConfig>;
  /**
   * Settings of this stack's Lambda handlers, over those parsed from `env` (e.g.
   * `{ trustedPrincipals: ['arn:aws:iam::123456789012:role/backend'] }`). The endpoints (SSE, WebSocket,
   * management API) are the stack's own. Defaults to none: the local IAM caller is the one trusted backend.
   */
  readonly lambda?: Partial<Pick<LambdaSettings, 'trustedPrincipals' | 'wsFanoutConcurrency' | 'wsGoneGraceMs' | 'logLevel' | 'wsFanoutShards' | 'wsFanoutInlineMax' | 'wsReplayInlineMax'>>;
  /**
   * Run the sharded fan-out: an in-process FIFO queue (`local/queue.ts`) consumed by the fan-out
   * worker handler, as SQS FIFO and its event source do on AWS. Shards and thresholds come from
   * `lambda` (or `env`). Defaults to none (every fan-out is inline), except with `webSocketMode`
   * `both` or a namespace with presence on, which always have one (with these options): the tasks hand `/live`
   * publishes and their presence events to it, as on AWS.
   */
  readonly fanoutQueue?: LocalQueueOptions;
  /**
   * Who consumes `fanoutQueue`: defaults to this stack's own fan-out worker handler, in process. The
   * benchmark passes Lambda "containers" on worker threads (`bench/lambda-containers.ts`) so parallel
   * invocations run on parallel CPUs, as separate Lambda execution environments do.
   */
  readonly fanoutConsumer?: QueueConsumer;
  readonly logger?: Logger;
  /**
   * Which WebSocket endpoint the ticket issuer hands out as `wsUrl` (a stage's `webSocket.mode`):
   * `apigateway` the API Gateway stand-in (`WebSocketUrl`), `tasks` or `both` the service's `/live`
   * (`LiveUrl`). Both endpoints are served either way. Defaults to `apigateway`, so harnesses written
   * against the stand-in keep their URLs; `npm run dev` passes the stage default, `both`.
   */
  readonly webSocketMode?: WebSocketMode;
  /**
   * Verify SigV4 signatures on the IAM routes (`/publish`, `/revoke`, `/backend/tickets`) against these local
   * credentials and region, as API Gateway's IAM authorisation does: unsigned or wrongly signed requests get 403
   * `{"message"}` and never reach a handler (`local/sigv4.ts`). `npm run dev -- --verify-signatures` passes the
   * credentials of the AWS SDK's chain. Defaults to none: IAM routes take any caller as the local backend.
   */
  readonly verifySignatures?: LocalSignatureOptions;
  /** Deterministic fault answers on the HTTP API (`local/faults.ts`), for tests. Defaults to none. */
  readonly faults?: LocalFaults;
  /**
   * The functions the namespaces' hooks name (`hooks` in NAMESPACES_JSON): a local function, or the URL of an HTTP
   * endpoint that takes the payload. The stack serves them on a stand-in of Lambda's Invoke API (`local/lambda-invoke.ts`)
   * and the ticket issuer, message handler and tasks call it with the signed `Invoke` they use on AWS. Defaults to none
   * (a hook naming an unknown function fails, and its failure policy decides).
   */
  readonly functions?: Readonly<Record<string, LocalFunction | string>>;
  /**
   * Backend events (BACKEND_EVENTS=true): an EventBridge stand-in (`local/eventbridge.ts`, `stack.eventBridge`) the
   * service relays the outbox to, as a task does to the stage's bus. `timers: false` leaves the occupancy ticks and the
   * relay to the caller (`stack.sse.events`). Defaults to none.
   */
  readonly backendEvents?: { readonly timers?: boolean };
}

/** The local credentials the hooks' invoker signs with, and the Invoke stand-in checks. */
const LOCAL_LAMBDA_CREDENTIALS = { accessKeyId: 'AKIDLOCALLAMBDA', secretAccessKey: 'local-lambda-secret' };
const LOCAL_REGION = 'us-east-1';

/** Where WebSockets terminate (lib/stage-config.ts `webSocket.mode`). */
export type WebSocketMode = 'apigateway' | 'tasks' | 'both';

export interface LocalOutputs {
  readonly TicketUrl: string;
  readonly SseUrl: string;
  readonly PollUrl: string;
  /** The API Gateway WebSocket stand-in. */
  readonly WebSocketUrl: string;
  /** The service's WebSocket endpoint (`/live` on the tasks). */
  readonly LiveUrl: string;
  readonly PublishUrl: string;
  readonly RedisEndpoint: string;
}

/** A WebSocket route handler as the Lambda factories build it. */
export type WsHandler = (event: WsEvent) => Promise<WsResult>;

/** The Lambda handlers of one local stack, built from its config (the same factories the Lambda entries use). */
export interface LocalHandlers {
  readonly tickets: HttpHandler;
  readonly publish: HttpHandler;
  readonly revoke: HttpHandler;
  readonly history: HttpHandler;
  readonly wsAuthorizer: AuthorizerHandler;
  readonly wsConnect: WsHandler;
  readonly wsDisconnect: WsHandler;
  readonly wsMessage: WsHandler;
  readonly fanoutWorker: (event: SQSEvent) => Promise<SQSBatchResponse>;
  readonly fanoutDeadLetters: (event: SQSEvent) => Promise<SQSBatchResponse>;
  /** The presence sweeper (run by the schedule on AWS; here by whoever calls it). */
  readonly presenceSweeper: (event: unknown, context?: SweeperContext) => Promise<GatewaySweepResult>;
}

export interface LocalStack {
  readonly outputs: LocalOutputs;
  /** The handlers' runtime: their config object, logger and clients (as one Lambda container's). */
  readonly lambda: FanoutRuntime;
  /** The handlers this stack serves, to call directly with hand-built events. */
  readonly handlers: LocalHandlers;
  /** The origins whose pages may call the stack (its own, then the configured ones). */
  readonly allowedOrigins: readonly string[];
  readonly sse: RealtimeServer;
  /** The API Gateway WebSocket stand-in (its management API is `ws.managementEndpoint`). */
  readonly ws: WsGateway;
  /** The fan-out queue's dead-letter queue, when `fanoutQueue` was given; consumed by the dead-letter handler. */
  readonly deadLetterQueue?: LocalFifoQueue;
  /** The fan-out queue, when `fanoutQueue` was given (its dead letters, counters and faults). */
  readonly queue?: LocalFifoQueue;
  readonly redisUrl: string;
  /** The private redis-server, when the stack started one. */
  readonly redisServer?: RedisServer;
  /** The Invoke API stand-in serving the hooks' functions (its `invocations`, `register`). */
  readonly lambdaInvoke: LocalLambda;
  /** The EventBridge stand-in, with `backendEvents`. */
  readonly eventBridge?: LocalEventBridge;
  close(): Promise<void>;
}

/** The WebSocket gateway's handler table: one route per action of `contract/ws.ts`, as the CDK stack creates. */
export function gatewayHandlers(h: Pick<LocalHandlers, 'wsAuthorizer' | 'wsConnect' | 'wsDisconnect' | 'wsMessage'>): WsGatewayHandlers {
  return {
    authorizer: h.wsAuthorizer,
    connect: h.wsConnect,
    disconnect: h.wsDisconnect,
    default: h.wsMessage,
    routes: Object.fromEntries(WS_ACTIONS.map((action) => [action, h.wsMessage])),
  };
}

/** Builds the handlers over one runtime. */
export function createHandlers(runtime: FanoutRuntime): LocalHandlers {
  return {
    tickets: createTicketIssuer(runtime),
    publish: createPublishHandler(runtime),
    revoke: createRevokeHandler(runtime),
    history: createHistoryHandler(runtime),
    wsAuthorizer: createWsAuthorizer(runtime),
    wsConnect: createWsConnect(runtime),
    wsDisconnect: createWsDisconnect(runtime),
    wsMessage: createWsMessage(runtime),
    fanoutWorker: createFanoutWorker(runtime),
    fanoutDeadLetters: createFanoutDeadLetterHandler(runtime),
    presenceSweeper: createPresenceSweeper(runtime),
  };
}

/**
 * Starts the local stack: Redis (private unless given), the SSE service, an HTTP API stand-in
 * that routes POST /tickets and POST /publish to the same Lambda handlers that run on AWS, and an
 * API Gateway WebSocket stand-in running the WebSocket handlers (its management API is where the
 * publish and message handlers post, through WS_MANAGEMENT_ENDPOINT).
 *
 * Every server of the stack answers browsers through one guard: only the stack's own origins and
 * `allowedOrigins` may call it (others get 403 `origin_not_allowed`, no CORS headers), and only
 * loopback Host names are served (403 otherwise: DNS rebinding). Requests without Origin pass.
 */
export async function startLocalStack(options: LocalStackOptions = {}): Promise<LocalStack> {
  const host = options.host ?? '127.0.0.1';
  // Before anything starts: a bad origin is a readable error, not a half-started stack.
  const guard = new LocalGuard({ allowedOrigins: options.allowedOrigins, hosts: [host] });
  const configured = new Set(guard.allowedOrigins);
  const redisServer = options.redisUrl || process.env[CORE_ENV.redisUrl] ? undefined : await RedisServer.start();
  const redisUrl = options.redisUrl || process.env[CORE_ENV.redisUrl] || redisServer!.url;
  let sse: RealtimeServer | undefined;
  let api: Server | undefined;
  let ws: WsGateway | undefined;
  let runtime: FanoutRuntime | undefined;
  let eventBridge: LocalEventBridge | undefined;
  let bus: EventBridgeBus | undefined;
  const mode = options.webSocketMode ?? 'apigateway';
  // Mode `both` always has the fan-out queue, as the deployed stack does: the tasks hand `/live` publishes to it for the
  // connections still on API Gateway. So does a stack with presence: the tasks hand it their presence events.
  const presence = presenceOn(options.core?.namespaces ?? parseNamespaces(options.env?.[CORE_ENV.namespacesJson] ?? process.env[CORE_ENV.namespacesJson]));
  const tasksQueue = mode === 'both' || presence;
  const withQueue = options.fanoutQueue !== undefined || tasksQueue;
  // The DLQ has no redrive of its own (as on AWS): its consumer gets a record until it settles it.
  const deadLetterQueue = withQueue ? new LocalFifoQueue({ maxReceiveCount: Number.MAX_SAFE_INTEGER, workers: 1 }) : undefined;
  const queue = withQueue ? new LocalFifoQueue({ ...options.fanoutQueue, deadLetterQueue }) : undefined;
  let lambdaInvoke: LocalLambda | undefined;
  let invoker: LambdaInvoker | undefined;
  try {
    lambdaInvoke = await LocalLambda.start({ functions: options.functions, credentials: LOCAL_LAMBDA_CREDENTIALS, region: LOCAL_REGION });
    // The same signed Invoke as on AWS, pointed at the stand-in; one per stack, shared by the handlers and the tasks.
    invoker = new LambdaInvoker({ credentials: async () => LOCAL_LAMBDA_CREDENTIALS, region: LOCAL_REGION, endpoint: new URL(lambdaInvoke.url) });
    const baseEnv: Record<string, string> = {
      [CORE_ENV.redisUrl]: redisUrl,
      SESSION_SECRET: randomBytes(32).toString('base64url'),
      // The guard in front of the service decides which origins reach it; those get CORS.
      ALLOWED_ORIGINS: '*',
      COOKIE_SECURE: 'false',
      ...(options.backendEvents ? { [CORE_ENV.backendEvents]: 'true' } : {}),
      ...options.env,
    };
    if (options.backendEvents) {
      eventBridge = await LocalEventBridge.start({ host });
      const creds = { accessKeyId: 'LOCAL', secretAccessKey: 'local-secret' };
      bus = new EventBridgeBus({ eventBusName: 'realtime-local', endpoint: eventBridge.url, region: eventBridge.region, credentials: async () => creds, backoffMs: 1 });
    }
    const env = { ...process.env, ...baseEnv };
    const serviceConfig = serviceConfigFromEnv(env);
    sse = new RealtimeServer(
      { ...serviceConfig, core: { ...serviceConfig.core, ...options.core }, wsFanoutShards: options.lambda?.wsFanoutShards ?? serviceConfig.wsFanoutShards },
      // Mode `both`: a `/live` publish reaches the API Gateway stand-in's connections through the queue and its worker; so
      // do the tasks' presence events.
      { logger: options.logger, fanoutQueue: tasksQueue ? queue : undefined, hooks: invoker, eventBus: bus, eventTimers: options.backendEvents?.timers },
    );
    guardServer(sse.server, guard);
    const ssePort = await sse.listen(options.ssePort ?? 0, host);
    guard.addOwnPort(ssePort);
    const sseBase = `http://${host}:${ssePort}`;
    const liveUrl = `ws://${host}:${ssePort}/live`;
    // The gateway needs its handlers before it listens, the handlers its URL after: they are bound once both exist.
    const late: { handlers?: LocalHandlers } = {};
    const bound = () => late.handlers!;
    ws = await startWsGateway({
      ...options.wsGateway,
      host,
      port: options.wsPort ?? 0,
      guard,
      handlers: gatewayHandlers({
        wsAuthorizer: (e) => bound().wsAuthorizer(e),
        wsConnect: (e) => bound().wsConnect(e),
        wsDisconnect: (e) => bound().wsDisconnect(e),
        wsMessage: (e) => bound().wsMessage(e),
      }),
    });
    // The handlers' config, as a deployment's environment gives it (lib/ sets these names), then the caller's objects.
    const fromEnv = lambdaConfigFromEnv({
      ...process.env,
      [CORE_ENV.redisUrl]: redisUrl,
      [LAMBDA_ENV.sseUrl]: `${sseBase}/events`,
      [LAMBDA_ENV.wsUrl]: mode === 'apigateway' ? ws.url : liveUrl,
      [LAMBDA_ENV.wsManagementEndpoint]: ws.managementEndpoint,
      // The local IAM caller is the one trusted backend (as a stage's trustedPrincipals lists its backends).
      [LAMBDA_ENV.trustedPrincipals]: LOCAL_IAM_ARN,
      ...(options.backendEvents ? { [CORE_ENV.backendEvents]: 'true' } : {}),
      ...options.env,
    });
    const lambdaConfig: LambdaConfig = {
      ...fromEnv,
      ...options.lambda,
      core: { ...fromEnv.core, ...options.core },
      trustedPrincipals: options.lambda?.trustedPrincipals ? parseTrustedPrincipals(options.lambda.trustedPrincipals.join(',')) : fromEnv.trustedPrincipals,
    };
    runtime = new FanoutRuntime(lambdaConfig, { queue, hooks: invoker });
    const handlers = createHandlers(runtime);
    late.handlers = handlers;
    queue?.start(options.fanoutConsumer ?? handlers.fanoutWorker);
    deadLetterQueue?.start(handlers.fanoutDeadLetters);
    const { tickets, publish: publishHandler, revoke: revokeHandler, history: historyHandler } = handlers;
    api = createHttpApi([
      { method: 'POST', path: '/tickets', auth: 'jwt', handler: tickets },
      // Backends (IAM) mint tickets naming the user, e.g. for `granted` namespaces, beside the users' JWT route.
      { method: 'POST', path: '/backend/tickets', auth: 'iam', handler: tickets },
      { method: 'POST', path: '/publish', auth: 'iam', handler: publishHandler },
      { method: 'POST', path: '/revoke', auth: 'iam', handler: revokeHandler },
      { method: 'GET', path: '/history', auth: 'iam', handler: historyHandler },
    ], guard, demoPages(), { signatures: options.verifySignatures, faults: options.faults }); // the demo page at the API's root (client/demo)
    const apiServer = api;
    const apiPort = await listen(apiServer, options.apiPort ?? 0, host);
    guard.addOwnPort(apiPort);
    const apiBase = `http://${host}:${apiPort}`;
    const outputs: LocalOutputs = {
      TicketUrl: `${apiBase}/tickets`,
      SseUrl: `${sseBase}/events`,
      PollUrl: `${sseBase}/poll`,
      WebSocketUrl: ws.url,
      LiveUrl: liveUrl,
      PublishUrl: `${apiBase}/publish`,
      RedisEndpoint: redisUrl.replace(/^rediss?:\/\/(?:[^@]*@)?/, ''),
    };
    const service = sse;
    const gateway = ws;
    const lambda = runtime;
    const hookInvoker = invoker;
    const hookFunctions = lambdaInvoke;
    // The stack's own origins (its servers on 127.0.0.1, localhost and [::1]), then the configured ones.
    const own = guard.allowedOrigins.filter((o) => !configured.has(o));
    return {
      outputs,
      allowedOrigins: [...own, ...configured],
      lambda,
      handlers,
      sse: service,
      ws: gateway,
      queue,
      deadLetterQueue,
      redisUrl,
      redisServer,
      lambdaInvoke,
      eventBridge,
      close: async () => {
        await shutdown(apiServer);
        await gateway.close();
        await service.close();
        await queue?.stop();
        await deadLetterQueue?.stop();
        // The handlers' clients, as if their Lambda containers were shut down.
        await lambda.close();
        hookInvoker.destroy();
        await hookFunctions.close();
        bus?.destroy();
        await eventBridge?.close();
        await redisServer?.destroy();
      },
    };
  } catch (err) {
    await sse?.close().catch(() => undefined);
    await ws?.close().catch(() => undefined);
    api?.close();
    await queue?.stop();
    await deadLetterQueue?.stop();
    await runtime?.close();
    invoker?.destroy();
    await lambdaInvoke?.close();
    bus?.destroy();
    await eventBridge?.close();
    await redisServer?.destroy();
    throw err;
  }
}
