import * as path from 'node:path';
import { Stack, Token } from 'aws-cdk-lib';
import type * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpIamAuthorizer, HttpJwtAuthorizer } from 'aws-cdk-lib/aws-apigatewayv2-authorizers';
import * as iam from 'aws-cdk-lib/aws-iam';
import { LAMBDA_ENV } from '../contract/settings';
import { Construct } from 'constructs';
import { checkTrustedPrincipals, invalid } from './errors';
import { HttpEndpoint } from './http-endpoint';
import { DEFAULTS } from './defaults';
import { LAMBDA_DIR, RealtimeFunction } from './realtime-function';
import type { TrustedCallerApiProps } from './runtime-api-props';

/** Callers authorised by IAM (SigV4): trusted backends that mint tickets on behalf of their users. */
export interface TicketIamAuth {
  readonly type: 'iam';
}

/** Callers authorised by a JWT from an OpenID Connect issuer (Cognito, Auth0, Entra ID, ...): browsers. */
export interface TicketJwtAuth {
  readonly type: 'jwt';
  /** Issuer URL (`iss`), https. */
  readonly issuer: string;
  /** Accepted audiences (`aud`, or `client_id` for Cognito access tokens); at least one. */
  readonly audience: readonly string[];
}

/** How `POST /tickets` authenticates callers. There is no unauthenticated option. */
export type TicketAuth = TicketIamAuth | TicketJwtAuth;

/** Properties of a {@link TicketApi}. */
export interface TicketApiProps extends TrustedCallerApiProps {
  /** Public `/events` URL handed out with SSE tickets (`SSE_URL`). */
  readonly sseUrl: string;
  /** `wss://` URL handed out with WebSocket tickets (`WS_URL`). */
  readonly webSocketUrl: string;
  /**
   * Who may mint tickets.
   * @default { type: 'iam' }
   */
  readonly auth?: TicketAuth;
  /**
   * Browser origins allowed by CORS.
   * @default [] - no CORS
   */
  readonly allowedOrigins?: readonly string[];
  /**
   * Entry file of the ticket issuer.
   * @default lambda/ticket-issuer.ts
   */
  readonly entry?: string;
}

/**
 * `POST /tickets`: an HTTP API that authenticates the caller (JWT or IAM) and runs the ticket issuer. With JWT auth,
 * `POST /backend/tickets` (IAM) runs the same issuer for trusted backends that name the user, which is how tickets for
 * `granted` namespaces are minted ("your backend asks for the ticket"); with IAM auth `/tickets` itself serves them.
 */
export class TicketApi extends Construct {
  public readonly handler: RealtimeFunction;
  public readonly endpoint: HttpEndpoint;
  /** `https://.../tickets` */
  public readonly url: string;
  /** Where trusted backends (IAM) mint tickets naming a user: `https://.../backend/tickets` with JWT auth, else {@link url}. */
  public readonly backendUrl: string;
  private readonly backendPath: string;

  constructor(scope: Construct, id: string, props: TicketApiProps) {
    super(scope, id);
    const auth: TicketAuth = props.auth ?? DEFAULTS.ticketApi.auth;
    const authorizer = this.authorizer(auth);
    const trusted = props.trustedPrincipals ?? DEFAULTS.trustedPrincipals;
    checkTrustedPrincipals(this, 'trustedPrincipals', trusted);

    this.handler = new RealtimeFunction(this, 'Issuer', {
      entry: props.entry ?? path.join(LAMBDA_DIR, 'ticket-issuer.ts'),
      description: 'POST /tickets: mints single-use connect tickets',
      vpc: props.vpc,
      // mandated after the caller's: the URLs handed out and who may mint tickets ('' trusts no IAM caller)
      environment: {
        ...props.environment,
        [LAMBDA_ENV.sseUrl]: props.sseUrl,
        [LAMBDA_ENV.wsUrl]: props.webSocketUrl,
        [LAMBDA_ENV.trustedPrincipals]: trusted.join(','),
      },
      logLevel: props.logLevel,
      logRetention: props.logRetention,
    });
    props.redis.connect(this.handler);

    this.endpoint = new HttpEndpoint(this, 'Http', {
      apiName: `${Stack.of(this).stackName}-tickets`,
      description: 'Realtime ticket API',
      path: '/tickets',
      handler: this.handler,
      authorizer,
      allowedOrigins: props.allowedOrigins,
      throttleRateLimit: props.throttleRateLimit ?? DEFAULTS.ticketApi.throttleRateLimit,
      throttleBurstLimit: props.throttleBurstLimit ?? DEFAULTS.ticketApi.throttleBurstLimit,
      logRetention: props.logRetention,
    });
    this.url = this.endpoint.url;
    if (auth.type === 'jwt') {
      this.backendPath = '/backend/tickets';
      this.endpoint.addPostRoute('BackendIntegration', this.backendPath, this.handler, new HttpIamAuthorizer());
      this.backendUrl = `${this.endpoint.api.apiEndpoint}${this.backendPath}`;
    } else {
      this.backendPath = '/tickets';
      this.backendUrl = this.url;
    }
  }

  /**
   * Lets a backend principal mint tickets naming a user (`execute-api:Invoke` on the IAM route of this API only). It
   * must also be listed in {@link TicketApiProps.trustedPrincipals}.
   */
  public grantBackendTickets(grantee: iam.IGrantable): iam.Grant {
    return iam.Grant.addToPrincipal({
      grantee,
      actions: ['execute-api:Invoke'],
      resourceArns: [this.endpoint.api.arnForExecuteApi('POST', this.backendPath, this.endpoint.stage.stageName)],
    });
  }

  private authorizer(auth: TicketAuth): apigwv2.IHttpRouteAuthorizer {
    switch (auth.type) {
      case 'iam':
        return new HttpIamAuthorizer();
      case 'jwt': {
        if (!Token.isUnresolved(auth.issuer) && !/^https:\/\/[^\s]+$/.test(auth.issuer)) {
          invalid(this, `auth.issuer "${auth.issuer}" is not an https URL`, 'Set auth.issuer to the token issuer (iss), e.g. https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf');
        }
        if (auth.audience.length === 0) {
          invalid(this, 'auth.audience is empty', 'List at least one accepted audience (aud, or the Cognito app client id)');
        }
        return new HttpJwtAuthorizer('JwtAuthorizer', auth.issuer, { jwtAudience: [...auth.audience] });
      }
      default:
        return invalid(this, `auth.type "${(auth as { type: string }).type}" is not supported`, 'Use { type: "jwt", issuer, audience } or { type: "iam" }');
    }
  }
}
