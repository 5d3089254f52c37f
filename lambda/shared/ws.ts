import type { ApiGatewayManagementApiClient } from '@aws-sdk/client-apigatewaymanagementapi';
import { createManagementClient, type DeliveryDeps } from '../../core/fanout';
import type { Runtime } from './runtime';
import { logger } from './runtime';

/**
 * API Gateway WebSocket event shapes (Lambda proxy integration) as the handlers read them, and the
 * management API client of this container.
 */

/** Context values an authorizer returns; API Gateway passes them to every route as `requestContext.authorizer`. */
export interface WsAuthorizerContext {
  /** The ticket's user. */
  readonly sub: string;
  /** The ticket's channels, comma-separated (authorizer context values are strings, numbers or booleans). */
  readonly channels: string;
  /** True when a trusted backend asked for the ticket (API Gateway may hand it over as "true"). */
  readonly byBackend: boolean | string;
  /** The user's revocation epoch the ticket carried (possibly as a numeric string). */
  readonly epoch: number | string;
}

export interface WsRequestContext {
  readonly routeKey: string;
  readonly eventType: 'CONNECT' | 'MESSAGE' | 'DISCONNECT';
  readonly connectionId: string;
  readonly domainName: string;
  readonly stage: string;
  readonly apiId: string;
  readonly requestId: string;
  readonly extendedRequestId: string;
  readonly requestTime: string;
  readonly requestTimeEpoch: number;
  readonly connectedAt: number;
  readonly messageDirection: 'IN';
  readonly messageId?: string;
  readonly identity: { readonly sourceIp: string; readonly userAgent?: string };
  readonly authorizer?: Partial<WsAuthorizerContext> & { readonly principalId?: string; readonly integrationLatency?: number };
  readonly disconnectStatusCode?: number;
  readonly disconnectReason?: string;
}

/** `$connect`, `$disconnect` and message events. */
export interface WsEvent {
  readonly requestContext: WsRequestContext;
  readonly body?: string;
  readonly isBase64Encoded: boolean;
  readonly headers?: Record<string, string>;
  readonly multiValueHeaders?: Record<string, string[]>;
  readonly queryStringParameters?: Record<string, string>;
  readonly multiValueQueryStringParameters?: Record<string, string[]>;
}

export interface WsResult {
  readonly statusCode: number;
  readonly body?: string;
}

/** The REQUEST authorizer event of a WebSocket `$connect`. */
export interface WsAuthorizerEvent {
  readonly type: 'REQUEST';
  readonly methodArn: string;
  readonly headers?: Record<string, string>;
  readonly multiValueHeaders?: Record<string, string[]>;
  readonly queryStringParameters?: Record<string, string>;
  readonly multiValueQueryStringParameters?: Record<string, string[]>;
  readonly stageVariables?: Record<string, string>;
  readonly requestContext: Omit<WsRequestContext, 'authorizer'>;
}

export interface WsAuthorizerResult {
  readonly principalId: string;
  readonly policyDocument: {
    readonly Version: '2012-10-17';
    readonly Statement: readonly { readonly Action: 'execute-api:Invoke'; readonly Effect: 'Allow' | 'Deny'; readonly Resource: string }[];
  };
  readonly context?: Record<string, string | number | boolean>;
}

let management: { endpoint: string; client: ApiGatewayManagementApiClient } | undefined;

/**
 * The management API client for WS_MANAGEMENT_ENDPOINT (the stage's callback URL), created once per
 * container; undefined when the variable is unset (a deployment without the WebSocket API).
 */
export function managementClient(): ApiGatewayManagementApiClient | undefined {
  const endpoint = process.env.WS_MANAGEMENT_ENDPOINT;
  if (!endpoint) return undefined;
  if (management?.endpoint !== endpoint) {
    management?.client.destroy();
    management = { endpoint, client: createManagementClient(endpoint) };
  }
  return management.client;
}

/** Closes the management API client (its kept-alive sockets); the local stack calls it when it stops. */
export function closeManagementClient(): void {
  management?.client.destroy();
  management = undefined;
}

/**
 * Delivery dependencies for a runtime. WS_FANOUT_CONCURRENCY and WS_GONE_GRACE_MS tune the fan-out
 * (defaults: 32 posts in flight; 10000 ms during which a 410 keeps a just-registered connection).
 */
export function deliveryDeps(rt: Runtime, client: ApiGatewayManagementApiClient): DeliveryDeps {
  const num = (v: string | undefined) => (v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined);
  return {
    redis: rt.redis,
    config: rt.config,
    management: client,
    logger,
    options: { concurrency: num(process.env.WS_FANOUT_CONCURRENCY), goneGraceMs: num(process.env.WS_GONE_GRACE_MS) },
  };
}
