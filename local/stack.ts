import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { serviceConfigFromEnv } from '../service/config';
import { SseService } from '../service/server';
import { createHttpApi } from './http-api';
import { RedisServer } from './redis';

/** The stack name under which the local outputs are written (the shape of `cdk deploy --outputs-file`). */
export const LOCAL_STACK_NAME = 'RealtimeBlueprint-local';

export interface LocalStackOptions {
  /** Port of the HTTP API stand-in (POST /tickets, POST /publish). Defaults to 0 (a free port). */
  readonly apiPort?: number;
  /** Port of the SSE service. Defaults to 0 (a free port). */
  readonly ssePort?: number;
  /** Host to bind. Defaults to 127.0.0.1: the local stack trusts `x-local-user` and must not be exposed. */
  readonly host?: string;
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
  readonly PublishUrl: string;
  readonly RedisEndpoint: string;
}

export interface LocalStack {
  readonly outputs: LocalOutputs;
  readonly sse: SseService;
  readonly redisUrl: string;
  /** The private redis-server, when the stack started one. */
  readonly redisServer?: RedisServer;
  close(): Promise<void>;
}

/**
 * Starts the local stack: Redis (private unless given), the SSE service and an HTTP API stand-in
 * that routes POST /tickets and POST /publish to the same Lambda handlers that run on AWS.
 */
export async function startLocalStack(options: LocalStackOptions = {}): Promise<LocalStack> {
  const host = options.host ?? '127.0.0.1';
  const redisServer = options.redisUrl || process.env.REDIS_URL ? undefined : await RedisServer.start();
  const redisUrl = options.redisUrl ?? process.env.REDIS_URL ?? redisServer!.url;
  let sse: SseService | undefined;
  let api: Server | undefined;
  try {
    const baseEnv: Record<string, string> = {
      REDIS_URL: redisUrl,
      SESSION_SECRET: randomBytes(32).toString('base64url'),
      ALLOWED_ORIGINS: '*',
      COOKIE_SECURE: 'false',
      ...options.env,
    };
    const env = { ...process.env, ...baseEnv };
    sse = new SseService(serviceConfigFromEnv(env), { logger: options.logger });
    const ssePort = await sse.listen(options.ssePort ?? 0, host);
    const sseBase = `http://${host}:${ssePort}`;
    // The Lambda handlers read their configuration from the environment, as on AWS.
    Object.assign(process.env, { REDIS_URL: redisUrl, SSE_URL: `${sseBase}/events`, ...options.env });
    const [{ handler: tickets }, { handler: publishHandler }] = await Promise.all([import('../lambda/ticket-issuer'), import('../lambda/publish')]);
    api = createHttpApi([
      { method: 'POST', path: '/tickets', auth: 'jwt', handler: tickets },
      { method: 'POST', path: '/publish', auth: 'iam', handler: publishHandler },
    ]);
    const apiServer = api;
    await new Promise<void>((resolve, reject) => {
      apiServer.once('error', reject);
      apiServer.listen(options.apiPort ?? 0, host, () => {
        apiServer.off('error', reject);
        resolve();
      });
    });
    const apiBase = `http://${host}:${(api.address() as AddressInfo).port}`;
    const outputs: LocalOutputs = {
      TicketUrl: `${apiBase}/tickets`,
      SseUrl: `${sseBase}/events`,
      PollUrl: `${sseBase}/poll`,
      PublishUrl: `${apiBase}/publish`,
      RedisEndpoint: redisUrl.replace(/^rediss?:\/\/(?:[^@]*@)?/, ''),
    };
    const service = sse;
    return {
      outputs,
      sse: service,
      redisUrl,
      redisServer,
      close: async () => {
        await new Promise<void>((resolve) => {
          apiServer.close(() => resolve());
          apiServer.closeAllConnections();
        });
        await service.close();
        await redisServer?.destroy();
      },
    };
  } catch (err) {
    await sse?.close().catch(() => undefined);
    api?.close();
    await redisServer?.destroy();
    throw err;
  }
}
