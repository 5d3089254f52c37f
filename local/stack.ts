import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import type { Logger } from 'pino';
import { serviceConfigFromEnv } from '../service/config';
import { listen, shutdown } from '../service/net';
import { SseService } from '../service/server';
import { guardServer, LocalGuard } from './guard';
import { createHttpApi, LOCAL_IAM_ARN } from './http-api';
import { demoPages } from './demo/pages';
import { RedisServer } from './redis';
import { startWsGateway, type WsGateway, type WsGatewayOptions } from './ws-gateway';

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
  /** Extra environment for the service and handlers (e.g. HEARTBEAT_MS). */
  readonly env?: Record<string, string>;
  readonly logger?: Logger;
}

export interface LocalOutputs {
  readonly TicketUrl: string;
  readonly SseUrl: string;
  readonly PollUrl: string;
  readonly WebSocketUrl: string;
  readonly PublishUrl: string;
  readonly RedisEndpoint: string;
}

export interface LocalStack {
  readonly outputs: LocalOutputs;
  /** The origins whose pages may call the stack (its own, then the configured ones). */
  readonly allowedOrigins: readonly string[];
  readonly sse: SseService;
  /** The API Gateway WebSocket stand-in (its management API is `ws.managementEndpoint`). */
  readonly ws: WsGateway;
  readonly redisUrl: string;
  /** The private redis-server, when the stack started one. */
  readonly redisServer?: RedisServer;
  close(): Promise<void>;
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
  const redisServer = options.redisUrl || process.env.REDIS_URL ? undefined : await RedisServer.start();
  const redisUrl = options.redisUrl || process.env.REDIS_URL || redisServer!.url;
  let sse: SseService | undefined;
  let api: Server | undefined;
  let ws: WsGateway | undefined;
  try {
    const baseEnv: Record<string, string> = {
      REDIS_URL: redisUrl,
      SESSION_SECRET: randomBytes(32).toString('base64url'),
      // The guard in front of the service decides which origins reach it; those get CORS.
      ALLOWED_ORIGINS: '*',
      COOKIE_SECURE: 'false',
      ...options.env,
    };
    const env = { ...process.env, ...baseEnv };
    sse = new SseService(serviceConfigFromEnv(env), { logger: options.logger });
    guardServer(sse.server, guard);
    const ssePort = await sse.listen(options.ssePort ?? 0, host);
    guard.addOwnPort(ssePort);
    const sseBase = `http://${host}:${ssePort}`;
    const [{ handler: tickets }, { handler: publishHandler }, { handler: revokeHandler }, wsAuthorizer, wsConnect, wsDisconnect, wsMessage] = await Promise.all([
      import('../lambda/ticket-issuer'),
      import('../lambda/publish'),
      import('../lambda/revoke'),
      import('../lambda/ws-authorizer'),
      import('../lambda/ws-connect'),
      import('../lambda/ws-disconnect'),
      import('../lambda/ws-message'),
    ]);
    ws = await startWsGateway({
      ...options.wsGateway,
      host,
      port: options.wsPort ?? 0,
      guard,
      handlers: {
        authorizer: wsAuthorizer.handler,
        connect: wsConnect.handler,
        disconnect: wsDisconnect.handler,
        default: wsMessage.handler,
        routes: { subscribe: wsMessage.handler, unsubscribe: wsMessage.handler, publish: wsMessage.handler, ping: wsMessage.handler },
      },
    });
    // The Lambda handlers read their configuration from the environment, as on AWS.
    Object.assign(process.env, {
      REDIS_URL: redisUrl,
      SSE_URL: `${sseBase}/events`,
      WS_URL: ws.url,
      WS_MANAGEMENT_ENDPOINT: ws.managementEndpoint,
      // The local IAM caller is the one trusted backend (as a stage's trustedPrincipals lists its backends).
      TRUSTED_PRINCIPALS: LOCAL_IAM_ARN,
      ...options.env,
    });
    api = createHttpApi([
      { method: 'POST', path: '/tickets', auth: 'jwt', handler: tickets },
      // Backends (IAM) mint tickets naming the user, e.g. for `granted` namespaces, beside the users' JWT route.
      { method: 'POST', path: '/backend/tickets', auth: 'iam', handler: tickets },
      { method: 'POST', path: '/publish', auth: 'iam', handler: publishHandler },
      { method: 'POST', path: '/revoke', auth: 'iam', handler: revokeHandler },
    ], guard, demoPages()); // the demo page at the API's root (client/demo)
    const apiServer = api;
    const apiPort = await listen(apiServer, options.apiPort ?? 0, host);
    guard.addOwnPort(apiPort);
    const apiBase = `http://${host}:${apiPort}`;
    const outputs: LocalOutputs = {
      TicketUrl: `${apiBase}/tickets`,
      SseUrl: `${sseBase}/events`,
      PollUrl: `${sseBase}/poll`,
      WebSocketUrl: ws.url,
      PublishUrl: `${apiBase}/publish`,
      RedisEndpoint: redisUrl.replace(/^rediss?:\/\/(?:[^@]*@)?/, ''),
    };
    const service = sse;
    const gateway = ws;
    // The stack's own origins (its servers on 127.0.0.1, localhost and [::1]), then the configured ones.
    const own = guard.allowedOrigins.filter((o) => !configured.has(o));
    return {
      outputs,
      allowedOrigins: [...own, ...configured],
      sse: service,
      ws: gateway,
      redisUrl,
      redisServer,
      close: async () => {
        await shutdown(apiServer);
        await gateway.close();
        await service.close();
        // The handlers' clients, as if their Lambda containers were shut down.
        const [{ closeRuntime }, { closeManagementClient }] = await Promise.all([import('../lambda/shared/runtime'), import('../lambda/shared/ws')]);
        closeManagementClient();
        await closeRuntime();
        await redisServer?.destroy();
      },
    };
  } catch (err) {
    await sse?.close().catch(() => undefined);
    await ws?.close().catch(() => undefined);
    api?.close();
    await redisServer?.destroy();
    throw err;
  }
}
