import type { ManagementApi } from '../fanout';
import { ManagementPoster, type ConnectionInfo } from './management';
import { environmentCredentials, type CredentialProvider } from './signer';

/**
 * The management API client the fan-out and the handlers are given (the domain's {@link ManagementApi} port): which
 * poster, which region, which credentials, for a stage's callback URL or the local gateway.
 */

export interface ManagementClientOptions {
  /** AWS region of the API. Defaults to the one in the endpoint's host name, else AWS_REGION, else us-east-1. */
  readonly region?: string;
  /** Sockets kept open to the endpoint. Defaults to 64. */
  readonly maxSockets?: number;
  /** Milliseconds before a post times out (and is retried). Defaults to 5000. */
  readonly requestTimeoutMs?: number;
  /**
   * Where the poster's credentials come from. Defaults to the environment (the Lambda role's variables, see
   * `core/aws/signer.ts`), or dummy ones for a loopback endpoint (the local gateway checks none).
   */
  readonly credentials?: CredentialProvider;
  /** The environment the default credentials are read from. Defaults to `process.env`. */
  readonly env?: NodeJS.ProcessEnv;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

/** True for the local gateway's endpoints (dummy credentials). */
export function isLoopbackEndpoint(endpoint: string): boolean {
  return LOOPBACK.has(new URL(endpoint).hostname);
}

/** The region of a stage's callback URL: the options', else the host name's, else AWS_REGION, else us-east-1. */
export function managementRegion(endpoint: string, options: { readonly region?: string } = {}): string {
  return options.region ?? /\.execute-api\.([a-z0-9-]+)\.amazonaws\.com$/.exec(new URL(endpoint).hostname)?.[1] ?? process.env.AWS_REGION ?? 'us-east-1';
}

/** Credentials of the local gateway, which checks none. */
export const LOCAL_CREDENTIALS = { accessKeyId: 'LOCALACCESSKEY', secretAccessKey: 'local-secret-not-checked' } as const;

/**
 * The fan-out's client for a stage's callback URL (`https://{api}.execute-api.{region}.amazonaws.com/{stage}`): the
 * lean {@link ManagementPoster} (one signed request per post on keep-alive sockets, about a third of the SDK's CPU per
 * call, see docs/BENCHMARKS.md), with credentials from the environment (the Lambda role), or dummy ones for a loopback
 * endpoint. It also closes connections (`deleteConnection`, for revocations) and reads one (`getConnection`, for the
 * presence sweeper).
 */
export function createManagementPoster(endpoint: string, options: ManagementClientOptions = {}): ManagementApi & { getConnection(connectionId: string): Promise<ConnectionInfo>; destroy(): void } {
  const local = isLoopbackEndpoint(endpoint);
  const poster = new ManagementPoster(endpoint, {
    region: managementRegion(endpoint, options),
    maxSockets: options.maxSockets ?? 64,
    requestTimeoutMs: options.requestTimeoutMs,
    credentials: options.credentials ?? (local ? async () => LOCAL_CREDENTIALS : environmentCredentials(options.env)),
  });
  return {
    postToConnection: (connectionId, data) => poster.postToConnection(connectionId, data),
    deleteConnection: (connectionId) => poster.deleteConnection(connectionId),
    getConnection: (connectionId) => poster.getConnection(connectionId),
    destroy: () => poster.destroy(),
  };
}
