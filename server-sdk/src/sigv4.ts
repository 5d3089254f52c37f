import { createHash, createHmac } from 'node:crypto';
import { SignatureV4 } from '@smithy/signature-v4';

/** AWS credentials as the AWS SDK's credential chain resolves them. */
export interface AwsCredentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
  readonly expiration?: Date;
}
/** Resolves credentials (the chain caches and refreshes them). */
export type AwsCredentialsProvider = () => Promise<AwsCredentials>;

type SourceData = string | ArrayBuffer | ArrayBufferView;
const bytes = (d: SourceData): string | Uint8Array => (typeof d === 'string' ? d : d instanceof ArrayBuffer ? new Uint8Array(d) : new Uint8Array(d.buffer, d.byteOffset, d.byteLength));

/** SHA-256 and HMAC-SHA-256 from node:crypto, in the shape `@smithy/signature-v4` takes (what `@smithy/hash-node` provides). */
export class NodeSha256 {
  private readonly hash: ReturnType<typeof createHash> | ReturnType<typeof createHmac>;
  constructor(secret?: SourceData) {
    this.hash = secret ? createHmac('sha256', bytes(secret)) : createHash('sha256');
  }
  update(data: SourceData): void {
    this.hash.update(bytes(data));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.hash.digest());
  }
  reset(): void {
    throw new Error('not used');
  }
}

/** The service API Gateway's IAM authorisation expects in the credential scope. */
export const SIGNING_SERVICE = 'execute-api';

/** The region of an `execute-api` host (`abc.execute-api.eu-west-1.amazonaws.com`), else undefined (custom domains, localhost). */
export function regionOfHost(hostname: string): string | undefined {
  return /\.execute-api\.([a-z0-9-]+)\.amazonaws\.com$/.exec(hostname)?.[1];
}

/** A request in the shape `@smithy/signature-v4` signs. */
export interface SignableRequest {
  method: string;
  protocol: string;
  hostname: string;
  port?: number;
  path: string;
  query: Record<string, string | string[]>;
  headers: Record<string, string>;
  body?: string | Uint8Array;
}

/** The request for `url` with a JSON body, before signing. */
export function jsonRequest(method: string, url: URL, body: string): SignableRequest {
  const query: Record<string, string | string[]> = {};
  for (const [k, v] of url.searchParams) {
    const prev = query[k];
    query[k] = prev === undefined ? v : ([] as string[]).concat(prev, v);
  }
  return {
    method,
    protocol: url.protocol,
    hostname: url.hostname,
    port: url.port ? Number(url.port) : undefined,
    path: url.pathname,
    query,
    headers: { host: url.host, 'content-type': 'application/json' },
    body,
  };
}

/** Signs `request` (SigV4, service execute-api): returns its headers with `authorization`, `x-amz-date`, `x-amz-content-sha256` (and `x-amz-security-token` for temporary credentials). */
export async function signRequest(
  request: SignableRequest,
  region: string,
  credentials: AwsCredentials | AwsCredentialsProvider,
  at: { signingDate?: Date; signableHeaders?: Set<string>; applyChecksum?: boolean } = {},
): Promise<Record<string, string>> {
  const signer = new SignatureV4({ service: SIGNING_SERVICE, region, credentials, sha256: NodeSha256, applyChecksum: at.applyChecksum ?? true });
  const signed = await signer.sign(request, { signingDate: at.signingDate, signableHeaders: at.signableHeaders });
  return signed.headers as Record<string, string>;
}
