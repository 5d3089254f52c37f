import { createHash, createHmac } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';

/**
 * The little of AWS the runtime calls itself, without the SDK: credentials from the Lambda environment or, on ECS, from
 * the container credentials endpoint (the task role), and SigV4 for the JSON protocols (AWS JSON 1.0 and 1.1: one
 * `POST /` with `X-Amz-Target`) and the Query protocol (a form-encoded `POST /`, for Elastic Load Balancing). The Lambda bundles call three APIs
 * (PostToConnection/DeleteConnection in `management.ts`, SQS SendMessageBatch in `sqs.ts`, Secrets Manager
 * GetSecretValue in `secrets.ts`); the SDK clients for them were about 460 KB of every bundle and most of its module
 * init (docs/BENCHMARKS.md, "Lambda bundles and cold start").
 */

export interface Credentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
  readonly expiration?: Date;
}

export type CredentialProvider = () => Promise<Credentials>;

/**
 * Credentials from the environment, where Lambda puts the function role's (`AWS_ACCESS_KEY_ID`,
 * `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, as the SDK's `fromEnv` reads them first in its default chain; also
 * `AWS_CREDENTIAL_EXPIRATION` when set). Read on each call, so a test or a refreshed environment is seen; rejects with
 * a clear error when they are missing (the handlers run on Lambda, which always sets them).
 */
export function environmentCredentials(env: NodeJS.ProcessEnv = process.env): CredentialProvider {
  return async () => {
    const accessKeyId = env.AWS_ACCESS_KEY_ID;
    const secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
    if (!accessKeyId || !secretAccessKey) {
      throw Object.assign(new Error('no AWS credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set (Lambda sets them from the function role)'), {
        name: 'CredentialsProviderError',
      });
    }
    const expiry = env.AWS_CREDENTIAL_EXPIRATION ? new Date(env.AWS_CREDENTIAL_EXPIRATION) : undefined;
    return { accessKeyId, secretAccessKey, sessionToken: env.AWS_SESSION_TOKEN || undefined, expiration: expiry && !Number.isNaN(expiry.getTime()) ? expiry : undefined };
  };
}

/** What went wrong fetching credentials; never carries a secret. */
function credentialsError(message: string): Error {
  return Object.assign(new Error(message), { name: 'CredentialsProviderError' });
}

/** The ECS agent's credentials endpoint, where `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` is rooted. */
export const ECS_CREDENTIALS_HOST = 'http://169.254.170.2';

export interface ContainerCredentialsOptions {
  /** Where the variables are read. Defaults to `process.env`. */
  readonly env?: NodeJS.ProcessEnv;
  /** Root of `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`. Defaults to {@link ECS_CREDENTIALS_HOST} (tests point it at a stand-in). */
  readonly host?: string;
  /** Milliseconds before a request to the endpoint is abandoned. Defaults to 2000. */
  readonly timeoutMs?: number;
}

/**
 * Credentials of the ECS task role from the container credentials endpoint, as the SDK's `fromContainerMetadata` and
 * `fromHttp` read them (Amazon ECS developer guide, "Amazon ECS task IAM role"): `GET 169.254.170.2` +
 * `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` (what ECS and Fargate set), else `AWS_CONTAINER_CREDENTIALS_FULL_URI` with
 * the `Authorization` header from `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` (read on every call: it is rotated) or
 * `AWS_CONTAINER_AUTHORIZATION_TOKEN`. The answer is `{AccessKeyId, SecretAccessKey, Token, Expiration}`. One request per
 * call: wrap it in {@link refreshingCredentials}, which keeps them until shortly before `Expiration`.
 */
export function containerCredentials(options: ContainerCredentialsOptions = {}): CredentialProvider {
  const env = options.env ?? process.env;
  return async () => {
    const relative = env.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI;
    const full = env.AWS_CONTAINER_CREDENTIALS_FULL_URI;
    const url = relative ? `${options.host ?? ECS_CREDENTIALS_HOST}${relative.startsWith('/') ? '' : '/'}${relative}` : full;
    if (!url) throw credentialsError('no container credentials: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and AWS_CONTAINER_CREDENTIALS_FULL_URI are not set (ECS sets the first from the task role)');
    const headers: Record<string, string> = {};
    if (!relative) {
      const file = env.AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE;
      const token = file ? (await readFile(file, 'utf8')).trim() : env.AWS_CONTAINER_AUTHORIZATION_TOKEN;
      if (token) headers.authorization = token;
    }
    let res: Response;
    try {
      res = await fetch(url, { headers, signal: AbortSignal.timeout(options.timeoutMs ?? 2000) });
    } catch (err) {
      throw credentialsError(`the container credentials endpoint did not answer: ${err instanceof Error ? err.message : String(err)}`);
    }
    const text = await res.text();
    if (!res.ok) throw credentialsError(`the container credentials endpoint answered ${res.status}`);
    let body: { AccessKeyId?: unknown; SecretAccessKey?: unknown; Token?: unknown; Expiration?: unknown };
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      throw credentialsError('the container credentials endpoint answered something other than JSON');
    }
    if (typeof body?.AccessKeyId !== 'string' || typeof body.SecretAccessKey !== 'string' || !body.AccessKeyId || !body.SecretAccessKey) {
      throw credentialsError('the container credentials endpoint answered without AccessKeyId and SecretAccessKey');
    }
    const expiration = typeof body.Expiration === 'string' ? new Date(body.Expiration) : undefined;
    if (expiration && Number.isNaN(expiration.getTime())) throw credentialsError('the container credentials endpoint answered an Expiration that is not a date');
    return { accessKeyId: body.AccessKeyId, secretAccessKey: body.SecretAccessKey, sessionToken: typeof body.Token === 'string' && body.Token ? body.Token : undefined, expiration };
  };
}

export interface RefreshOptions {
  /** The clock, in milliseconds since the epoch. Defaults to `Date.now` (tests inject one). */
  readonly now?: () => number;
  /** Credentials are fetched again this many milliseconds before their `Expiration`. Defaults to 300000 (5 minutes, as the SDK). */
  readonly refreshBeforeMs?: number;
}

/**
 * Caches what `provider` returns until `refreshBeforeMs` before its `expiration` (credentials without one are kept),
 * with one fetch in flight at a time. When a refresh fails while the cached credentials have not expired yet, those are
 * returned and the next call tries again; once they expired, the failure is thrown.
 */
export function refreshingCredentials(provider: CredentialProvider, options: RefreshOptions = {}): CredentialProvider {
  const now = options.now ?? Date.now;
  const before = options.refreshBeforeMs ?? 300_000;
  let cached: Credentials | undefined;
  let pending: Promise<Credentials> | undefined;
  return async () => {
    const c = cached;
    if (c && (!c.expiration || c.expiration.getTime() - now() > before)) return c;
    pending ??= provider().then(
      (fresh) => {
        cached = fresh;
        pending = undefined;
        return fresh;
      },
      (err: unknown) => {
        pending = undefined;
        throw err;
      },
    );
    try {
      return await pending;
    } catch (err) {
      if (c?.expiration && c.expiration.getTime() > now()) return c;
      throw err;
    }
  };
}

/**
 * The credentials of wherever the runtime runs, in the order of the SDK's default chain for these two places: the
 * environment's (Lambda sets them from the function role) when `AWS_ACCESS_KEY_ID` is set, else the container
 * credentials endpoint's (ECS: the task role), refreshed before they expire; else the environment's, which rejects
 * with a clear error.
 */
export function runtimeCredentials(env: NodeJS.ProcessEnv = process.env, options: ContainerCredentialsOptions & RefreshOptions = {}): CredentialProvider {
  if (env.AWS_ACCESS_KEY_ID) return environmentCredentials(env);
  if (env.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI || env.AWS_CONTAINER_CREDENTIALS_FULL_URI) return refreshingCredentials(containerCredentials({ ...options, env }), options);
  return environmentCredentials(env);
}

function hmac(key: string | Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

/**
 * SigV4 headers of a POST to `/` with a JSON body: the AWS JSON protocols (SQS: `application/x-amz-json-1.0`, Secrets
 * Manager: `application/x-amz-json-1.1`). Signs content-type, host, x-amz-date, x-amz-target and, with a session
 * token, x-amz-security-token.
 */
export function signJsonPost(
  host: string,
  target: string,
  body: string,
  region: string,
  service: string,
  creds: Credentials,
  now: Date,
  contentType = 'application/x-amz-json-1.0',
): Record<string, string> {
  return signPost(host, { 'content-type': contentType, 'x-amz-target': target }, body, region, service, creds, now);
}

/**
 * SigV4 headers of a POST to `/` with a form-encoded body: the AWS Query protocol (Elastic Load Balancing v2:
 * `Action=…&Version=2015-12-01&…`, an XML answer). Signs content-type, host, x-amz-date and, with a session token,
 * x-amz-security-token.
 */
export function signFormPost(host: string, body: string, region: string, service: string, creds: Credentials, now: Date): Record<string, string> {
  return signPost(host, { 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' }, body, region, service, creds, now);
}

/**
 * SigV4 headers of a POST of a JSON body to `path` (a REST-JSON API: Lambda's `Invoke` at
 * `/2015-03-31/functions/{name}/invocations`). `path` is as sent, its segments already URI-encoded once; the canonical
 * URI encodes each segment again, as SigV4 wants for every service but S3. Signs content-type, host, x-amz-date and,
 * with a session token, x-amz-security-token.
 */
export function signRestJsonPost(host: string, path: string, body: string, region: string, service: string, creds: Credentials, now: Date): Record<string, string> {
  return signPost(host, { 'content-type': 'application/json' }, body, region, service, creds, now, path);
}

/** SigV4 of a POST to `path` (default `/`) with `headers` (lower-case names) signed beside host, x-amz-date and the session token. */
function signPost(host: string, extra: Record<string, string>, body: string, region: string, service: string, creds: Credentials, now: Date, path = '/'): Record<string, string> {
  const amzDate = now.toISOString().replace(/[:-]|\.\d{3}/g, '');
  const date = amzDate.slice(0, 8);
  const headers: Record<string, string> = { ...extra, host, 'x-amz-date': amzDate };
  if (creds.sessionToken) headers['x-amz-security-token'] = creds.sessionToken;
  const names = Object.keys(headers).sort();
  const uri = path.split('/').map(encodeURIComponent).join('/');
  const canonical = ['POST', uri, '', ...names.map((n) => `${n}:${headers[n]}`), '', names.join(';'), createHash('sha256').update(body).digest('hex')].join('\n');
  const scope = `${date}/${region}/${service}/aws4_request`;
  const toSign = `AWS4-HMAC-SHA256\n${amzDate}\n${scope}\n${createHash('sha256').update(canonical).digest('hex')}`;
  const key = hmac(hmac(hmac(hmac(`AWS4${creds.secretAccessKey}`, date), region), service), 'aws4_request');
  headers.authorization = `AWS4-HMAC-SHA256 Credential=${creds.accessKeyId}/${scope}, SignedHeaders=${names.join(';')}, Signature=${createHmac('sha256', key).update(toSign).digest('hex')}`;
  return headers;
}

/** POSTs `body` with `headers` to `url`; resolves with the status and the body text (any status). */
export function postText(url: URL, headers: Record<string, string>, body: string, options: { agent?: HttpAgent | HttpsAgent; timeoutMs?: number; what?: string } = {}): Promise<{ status: number; text: string; headers: Record<string, string | string[] | undefined> }> {
  const request = url.protocol === 'https:' ? (httpsRequest as typeof httpRequest) : httpRequest;
  const timeoutMs = options.timeoutMs ?? 5000;
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', headers: { ...headers, 'content-length': Buffer.byteLength(body) }, agent: options.agent, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.once('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8'), headers: res.headers }));
      res.once('error', reject);
    });
    req.once('timeout', () => req.destroy(Object.assign(new Error(`${options.what ?? 'request'} took over ${timeoutMs} ms`), { name: 'TimeoutError' })));
    req.once('error', reject);
    req.end(body);
  });
}

/**
 * The endpoint the AWS SDK would call for a service (`hostPrefix`: `events`, `lambda`, `secretsmanager`):
 * `AWS_ENDPOINT_URL_<SERVICE_ID>` (e.g. `AWS_ENDPOINT_URL_EVENTBRIDGE`), else `AWS_ENDPOINT_URL`, else the regional one
 * (`.amazonaws.com.cn` in the China regions).
 */
export function serviceEndpoint(hostPrefix: string, serviceIdVariable: string, region: string, env: NodeJS.ProcessEnv): URL {
  const override = env[serviceIdVariable] || env.AWS_ENDPOINT_URL;
  if (override) return new URL(override);
  return new URL(`https://${hostPrefix}.${region}.amazonaws.com${region.startsWith('cn-') ? '.cn' : ''}/`);
}
