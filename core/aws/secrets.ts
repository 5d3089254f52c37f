import { environmentCredentials, postText, signJsonPost, type CredentialProvider, serviceEndpoint } from './signer';

/**
 * Secrets Manager `GetSecretValue` as one signed request (AWS JSON 1.1, `X-Amz-Target: secretsmanager.GetSecretValue`),
 * without `@aws-sdk/client-secrets-manager`: the Lambdas read one secret once per container (the Redis AUTH token,
 * `REDIS_SECRET_ARN`), and the SDK client with its credential chain was most of the 460 KB the SDK took in every bundle. Like the SDK: the region is `AWS_REGION`
 * (else the secret ARN's), the endpoint `https://secretsmanager.{region}.amazonaws.com` unless
 * `AWS_ENDPOINT_URL_SECRETS_MANAGER` or `AWS_ENDPOINT_URL` names another, credentials come from the environment, and
 * throttling, 5xx answers and network errors are tried three times in all with jittered backoff.
 */

export interface SecretsOptions {
  /** The environment read for the region, endpoint and credentials. Defaults to `process.env`. */
  readonly env?: NodeJS.ProcessEnv;
  /** Where the credentials come from. Defaults to {@link environmentCredentials} of `env`. */
  readonly credentials?: CredentialProvider;
  /** Attempts when throttled, failing with a 5xx or on the network. Defaults to 3. */
  readonly maxAttempts?: number;
  /** The signing clock. Defaults to the system clock. */
  readonly now?: () => Date;
}

/** An error answered by Secrets Manager, shaped like the SDK's (`name` is the error type, `$metadata.httpStatusCode`). */
export class SecretsManagerError extends Error {
  readonly $metadata: { readonly httpStatusCode?: number };
  constructor(name: string, message: string, status?: number) {
    super(message);
    this.name = name;
    this.$metadata = { httpStatusCode: status };
  }
}

const RETRYABLE_TYPES = new Set(['ThrottlingException', 'TooManyRequestsException', 'InternalServiceError', 'RequestTimeout', 'TimeoutError']);

/** The endpoint the SDK would call for the region (`AWS_ENDPOINT_URL_SECRETS_MANAGER`, `AWS_ENDPOINT_URL`, else the regional one). */
export function secretsManagerEndpoint(region: string, env: NodeJS.ProcessEnv = process.env): URL {
  return serviceEndpoint('secretsmanager', 'AWS_ENDPOINT_URL_SECRETS_MANAGER', region, env);
}

type Attempt = { readonly value: string } | { readonly error: SecretsManagerError; readonly retry: boolean };

/** One signed GetSecretValue: the value, or the error and whether trying again may help. */
async function getOnce(endpoint: URL, region: string, body: string, credentials: CredentialProvider, now: Date): Promise<Attempt> {
  const headers = signJsonPost(endpoint.host, 'secretsmanager.GetSecretValue', body, region, 'secretsmanager', await credentials(), now, 'application/x-amz-json-1.1');
  let res: Awaited<ReturnType<typeof postText>>;
  try {
    res = await postText(endpoint, headers, body, { what: 'GetSecretValue' });
  } catch (err) {
    return { error: new SecretsManagerError((err as Error).name || 'NetworkError', (err as Error).message), retry: true };
  }
  let answer: { SecretString?: unknown; SecretBinary?: unknown; __type?: unknown; message?: unknown; Message?: unknown } = {};
  try {
    answer = JSON.parse(res.text) as typeof answer;
  } catch {
    // not JSON: named by the status below
  }
  if (res.status >= 200 && res.status < 300) {
    if (typeof answer.SecretString === 'string') return { value: answer.SecretString };
    if (typeof answer.SecretBinary === 'string') return { value: Buffer.from(answer.SecretBinary, 'base64').toString('utf8') };
    return { error: new SecretsManagerError('InvalidResponse', `GetSecretValue answered ${res.status} without SecretString`, res.status), retry: false };
  }
  // `__type` is `Namespace#Type` (or a bare type); the header form is `Type:detail`.
  const raw = String(answer.__type ?? res.headers['x-amzn-errortype'] ?? '');
  const type = raw.split(':')[0].split('#').pop() || (res.status >= 500 ? 'InternalServiceError' : 'UnknownError');
  const error = new SecretsManagerError(type, String(answer.message ?? answer.Message ?? `GetSecretValue answered ${res.status}`), res.status);
  return { error, retry: res.status >= 500 || res.status === 429 || RETRYABLE_TYPES.has(type) };
}

/** `SecretString` of the secret (its current version); rejects with a {@link SecretsManagerError} when refused. */
export async function getSecretString(secretId: string, options: SecretsOptions = {}): Promise<string> {
  const env = options.env ?? process.env;
  const region = env.AWS_REGION || env.AWS_DEFAULT_REGION || /^arn:[^:]+:secretsmanager:([a-z0-9-]+):/.exec(secretId)?.[1] || 'us-east-1';
  const endpoint = secretsManagerEndpoint(region, env);
  const credentials = options.credentials ?? environmentCredentials(env);
  const body = JSON.stringify({ SecretId: secretId });
  const attempts = options.maxAttempts ?? 3;
  for (let attempt = 1; ; attempt++) {
    const a = await getOnce(endpoint, region, body, credentials, options.now?.() ?? new Date());
    if ('value' in a) return a.value;
    if (!a.retry || attempt >= attempts) throw a.error;
    await new Promise((r) => setTimeout(r, Math.random() * 100 * 2 ** attempt));
  }
}

/** The Redis AUTH token in a secret: a plain string, or JSON with `password`, `authToken` or `token`. */
export async function secretPassword(secretId: string, options: SecretsOptions = {}): Promise<string> {
  const raw = await getSecretString(secretId, options);
  try {
    const obj = JSON.parse(raw) as Record<string, unknown>;
    const v = obj.password ?? obj.authToken ?? obj.token;
    if (typeof v === 'string') return v;
  } catch {
    // a plain-string secret
  }
  return raw;
}
