import { createHash, createHmac } from 'node:crypto';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { CredentialProvider, Credentials } from './signer';

export type { CredentialProvider, Credentials } from './signer';

/**
 * A lean `PostToConnection` (and `DeleteConnection`, for revocations, and `GetConnection`, for the presence sweeper) for the fan-out: one signed HTTP request on a keep-alive socket, without
 * the SDK's middleware stack, endpoint rules and retry machinery. `npm run bench:ws` measured the SDK
 * client at about 0.35 ms of CPU per post on this project's 2-vCPU machine, almost all of it outside
 * the network: middleware, endpoint resolution and a full SigV4 pass per request. Here the SigV4
 * signing key is derived once per day and region, the canonical request has a fixed shape (one
 * POST, three signed headers), and the socket pool is Node's own agent.
 *
 * Errors are shaped like the SDK's (`name` from `x-amzn-errortype`, `$metadata.httpStatusCode`), so
 * `isGone`/`isThrottled`/`isRetryable` in `core/fanout.ts` classify both alike. Credentials come from
 * a provider (the SDK client's resolved chain on AWS: the Lambda role's variables), refreshed before
 * they expire.
 */

export interface ManagementPosterOptions {
  /** AWS region the endpoint is in (signing scope). Required. */
  readonly region: string;
  /** Where the credentials come from. Required. */
  readonly credentials: CredentialProvider;
  /** Sockets kept open to the endpoint. Defaults to 64. */
  readonly maxSockets?: number;
  /** Milliseconds before a post is abandoned (a `TimeoutError`, retried by the fan-out). Defaults to 5000. */
  readonly requestTimeoutMs?: number;
  /** The signing clock. Defaults to the system clock (tests pin it to compare signatures). */
  readonly now?: () => Date;
}

/**
 * GetConnection's answer (`GET @connections/{id}`: "Use @connections commands in your backend service",
 * https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-how-to-call-websocket-api-connections.html),
 * with the API model's JSON names (`connectedAt`, `identity`, `lastActiveAt`; timestamps ISO 8601).
 */
export interface ConnectionInfo {
  readonly connectedAt: string;
  readonly lastActiveAt: string;
  readonly identity: { readonly sourceIp: string; readonly userAgent?: string };
}

/** What an error of the management API looks like to the fan-out's classifiers. */
export class ManagementApiError extends Error {
  readonly $metadata: { readonly httpStatusCode?: number };
  readonly code?: string;
  constructor(name: string, message: string, status?: number, code?: string) {
    super(message);
    this.name = name;
    this.$metadata = { httpStatusCode: status };
    this.code = code;
  }
}

const EMPTY_HASH = createHash('sha256').update('').digest('hex');
const EMPTY = new Uint8Array(0);

/** RFC 3986 encoding of one path segment, as SigV4's canonical URI wants it (API Gateway: single-encoded). */
function encodeSegment(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

export class ManagementPoster {
  private readonly url: URL;
  private readonly basePath: string;
  private readonly agent: HttpAgent | HttpsAgent;
  private readonly request: typeof httpRequest;
  private readonly timeoutMs: number;
  private creds?: Credentials;
  private credsPending?: Promise<Credentials>;
  private keyDate = '';
  private key?: Buffer;
  private keyFor?: string;

  constructor(
    endpoint: string,
    private readonly options: ManagementPosterOptions,
  ) {
    this.url = new URL(endpoint);
    this.basePath = this.url.pathname.replace(/\/+$/, '');
    const secure = this.url.protocol === 'https:';
    const maxSockets = options.maxSockets ?? 64;
    this.agent = secure ? new HttpsAgent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets }) : new HttpAgent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets });
    this.request = secure ? (httpsRequest as typeof httpRequest) : httpRequest;
    this.timeoutMs = options.requestTimeoutMs ?? 5000;
  }

  private async credentials(): Promise<Credentials> {
    const c = this.creds;
    // Refreshed five minutes before they expire (Lambda role credentials last hours).
    if (c && (!c.expiration || c.expiration.getTime() - Date.now() > 300_000)) return c;
    this.credsPending ??= this.options.credentials().then(
      (fresh) => {
        this.creds = fresh;
        this.credsPending = undefined;
        return fresh;
      },
      (err: unknown) => {
        this.credsPending = undefined;
        throw err;
      },
    );
    return this.credsPending;
  }

  private signingKey(secret: string, date: string): Buffer {
    const id = `${secret}\n${date}`;
    if (this.key && this.keyFor === id) return this.key;
    const kDate = createHmac('sha256', `AWS4${secret}`).update(date).digest();
    const kRegion = createHmac('sha256', kDate).update(this.options.region).digest();
    const kService = createHmac('sha256', kRegion).update('execute-api').digest();
    this.key = createHmac('sha256', kService).update('aws4_request').digest();
    this.keyFor = id;
    this.keyDate = date;
    return this.key;
  }

  private dateSecond = -1;
  private dateText = '';

  /** `YYYYMMDDTHHMMSSZ`, formatted once per second. */
  private amzDate(): string {
    const now = this.options.now?.() ?? new Date();
    const second = Math.floor(now.getTime() / 1000);
    if (second !== this.dateSecond) {
      this.dateSecond = second;
      this.dateText = now.toISOString().replace(/[:-]|\.\d{3}/g, '');
    }
    return this.dateText;
  }

  /** Posts `data` to one connection; resolves on 2xx, rejects with a {@link ManagementApiError} otherwise. */
  async postToConnection(connectionId: string, data: Uint8Array): Promise<void> {
    await this.call('POST', connectionId, data);
  }

  /** Closes one connection (`DELETE @connections/{id}`); resolves on 2xx, rejects with a {@link ManagementApiError} otherwise. */
  async deleteConnection(connectionId: string): Promise<void> {
    await this.call('DELETE', connectionId, EMPTY);
  }

  /**
   * What API Gateway knows of one connection (`GET @connections/{id}`, GetConnection): its JSON answer on 200; a closed
   * or unknown connection rejects with `GoneException` (410), like the other calls.
   */
  async getConnection(connectionId: string): Promise<ConnectionInfo> {
    const body = await this.call('GET', connectionId, EMPTY);
    return JSON.parse(body) as ConnectionInfo;
  }

  private async call(method: 'POST' | 'DELETE' | 'GET', connectionId: string, data: Uint8Array): Promise<string> {
    const action = method === 'POST' ? 'PostToConnection' : method === 'GET' ? 'GetConnection' : 'DeleteConnection';
    const creds = this.creds && (!this.creds.expiration || this.creds.expiration.getTime() - Date.now() > 300_000) ? this.creds : await this.credentials();
    const path = `${this.basePath}/@connections/${encodeSegment(connectionId)}`;
    const amzDate = this.amzDate();
    const date = amzDate.slice(0, 8);
    const payloadHash = data.length === 0 ? EMPTY_HASH : createHash('sha256').update(data).digest('hex');
    const host = this.url.host;
    const signedHeaders = creds.sessionToken ? 'host;x-amz-date;x-amz-security-token' : 'host;x-amz-date';
    const canonicalHeaders = `host:${host}\nx-amz-date:${amzDate}\n${creds.sessionToken ? `x-amz-security-token:${creds.sessionToken}\n` : ''}`;
    // SigV4 canonical URI: each segment encoded again (execute-api is not S3).
    const canonicalPath = path.split('/').map(encodeSegment).join('/');
    const canonical = `${method}\n${canonicalPath}\n\n${canonicalHeaders}\n${signedHeaders}\n${payloadHash}`;
    const scope = `${date}/${this.options.region}/execute-api/aws4_request`;
    const toSign = `AWS4-HMAC-SHA256\n${amzDate}\n${scope}\n${createHash('sha256').update(canonical).digest('hex')}`;
    const signature = createHmac('sha256', this.signingKey(creds.secretAccessKey, date)).update(toSign).digest('hex');
    const headers: Record<string, string | number> = {
      host,
      'x-amz-date': amzDate,
      ...(method === 'POST' ? { 'content-type': 'application/json', 'content-length': data.length } : {}),
      authorization: `AWS4-HMAC-SHA256 Credential=${creds.accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`,
    };
    if (creds.sessionToken) headers['x-amz-security-token'] = creds.sessionToken;
    return new Promise<string>((resolve, reject) => {
      const req = this.request(
        { protocol: this.url.protocol, hostname: this.url.hostname, port: this.url.port || undefined, method, path, headers, agent: this.agent, timeout: this.timeoutMs },
        (res: IncomingMessage) => {
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) {
            if (method !== 'GET') {
              res.resume();
              res.once('end', () => resolve(''));
            } else {
              const body: Buffer[] = [];
              res.on('data', (c: Buffer) => body.push(c));
              res.once('end', () => resolve(Buffer.concat(body).toString('utf8')));
            }
            res.once('error', reject);
            return;
          }
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.once('error', reject);
          res.once('end', () => {
            const type = String(res.headers['x-amzn-errortype'] ?? '').split(':')[0];
            let message = '';
            try {
              message = String((JSON.parse(Buffer.concat(chunks).toString('utf8')) as { message?: unknown }).message ?? '');
            } catch {
              // not JSON
            }
            const name = type || (status === 410 ? 'GoneException' : status === 429 ? 'LimitExceededException' : status >= 500 ? 'InternalServerError' : 'UnknownError');
            reject(new ManagementApiError(name, message || `${action} answered ${status}`, status));
          });
        },
      );
      req.once('timeout', () => req.destroy(new ManagementApiError('TimeoutError', `${action} took over ${this.timeoutMs} ms`)));
      req.once('error', (err: Error & { code?: string }) => reject(err instanceof ManagementApiError ? err : new ManagementApiError(err.name, err.message, undefined, err.code)));
      if (method === 'POST') req.end(data);
      else req.end();
    });
  }

  /** Closes the kept-alive sockets. */
  destroy(): void {
    this.agent.destroy();
  }

  /** The UTC date (YYYYMMDD) of the cached signing key, for tests. */
  get signingDate(): string {
    return this.keyDate;
  }
}
