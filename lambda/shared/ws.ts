/** API Gateway WebSocket event shapes (Lambda proxy integration) as the handlers read them. */

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
  /** The presence `info` a backend attached to the ticket, as JSON text (absent without). */
  readonly info?: string;
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
