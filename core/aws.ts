import { createHash, createHmac } from 'node:crypto';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';

/**
 * The little of AWS the runtime calls itself, without the SDK: credentials from the Lambda environment and SigV4 for
 * the JSON protocols (AWS JSON 1.0 and 1.1: one `POST /` with `X-Amz-Target`). The Lambda bundles call three APIs
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
  const amzDate = now.toISOString().replace(/[:-]|\.\d{3}/g, '');
  const date = amzDate.slice(0, 8);
  const headers: Record<string, string> = { 'content-type': contentType, host, 'x-amz-date': amzDate, 'x-amz-target': target };
  if (creds.sessionToken) headers['x-amz-security-token'] = creds.sessionToken;
  const names = Object.keys(headers).sort();
  const canonical = ['POST', '/', '', ...names.map((n) => `${n}:${headers[n]}`), '', names.join(';'), createHash('sha256').update(body).digest('hex')].join('\n');
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
