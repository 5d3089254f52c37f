import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SignatureV4 } from '@smithy/signature-v4';
import { ManagementPoster } from '../../core/aws/management';
import { createRedis, waitReady } from '../../core/redis/client';
import { getSecretString, secretPassword } from '../../core/aws/secrets';
import { signJsonPost, SqsFifoQueue } from '../../core/aws/sqs';
import { LambdaRuntime } from '../../lambda/shared/runtime';
import { RedisServer } from '../../local/redis';
import { Sha256 } from '../support/aws-stand-ins';

/**
 * The runtime's own AWS calls, made without the SDK: the lean PostToConnection/DeleteConnection
 * signer, the SQS SendMessageBatch sender and Secrets Manager GetSecretValue. Their SigV4
 * signatures are checked against the AWS SDK's signer (@smithy/signature-v4) on the exact requests
 * they sent to a real local server; the SQS sender against a local stand-in that answers SQS's JSON
 * protocol, with entry failures by count; GetSecretValue against a local stand-in of Secrets
 * Manager's JSON 1.1 protocol, which the SDK's own client reads alike.
 */

const NOW = new Date('2026-11-29T09:00:00.000Z');
const CREDS = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY', sessionToken: 'session-token' };

interface Seen {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
}

async function serve(answer: (seen: Seen) => { status: number; body?: string; headers?: Record<string, string> }): Promise<{ server: Server; base: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const s = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      seen.push(s);
      const a = answer(s);
      res.writeHead(a.status, a.headers ?? {});
      res.end(a.body ?? '');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

async function sdkAuthorization(service: string, region: string, seen: Seen, signed: string[], method = 'POST'): Promise<string> {
  const signer = new SignatureV4({ service, region, credentials: CREDS, sha256: Sha256, applyChecksum: false });
  const headers: Record<string, string> = {};
  for (const h of signed) if (h !== 'x-amz-date' && h !== 'x-amz-security-token') headers[h] = String(seen.headers[h]);
  const out = await signer.sign({ method, protocol: 'http:', hostname: '127.0.0.1', path: seen.path.split('?')[0], headers, body: seen.body }, { signingDate: NOW });
  return String(out.headers.authorization);
}

describe('lean PostToConnection', () => {
  test('signature: the same as the AWS SDK signer for the request it sent (session token, a connection id needing escapes)', async () => {
    const { server, base, seen } = await serve(() => ({ status: 200 }));
    const poster = new ManagementPoster(`${base}/prod`, { region: 'eu-west-1', credentials: async () => CREDS, now: () => NOW });
    try {
      await poster.postToConnection('Ab1=+/x', Buffer.from('{"hello":"world"}'));
      expect(seen[0].path).toBe('/prod/@connections/Ab1%3D%2B%2Fx');
      const auth = String(seen[0].headers.authorization);
      const signed = /SignedHeaders=([^,]+)/.exec(auth)![1].split(';');
      expect(signed).toEqual(['host', 'x-amz-date', 'x-amz-security-token']);
      expect(auth).toBe(await sdkAuthorization('execute-api', 'eu-west-1', seen[0], signed));
    } finally {
      poster.destroy();
      server.close();
    }
  });

  test('DeleteConnection: DELETE with an empty body, signed the same as the AWS SDK signer', async () => {
    const { server, base, seen } = await serve(() => ({ status: 204 }));
    const poster = new ManagementPoster(`${base}/prod`, { region: 'eu-west-1', credentials: async () => CREDS, now: () => NOW });
    try {
      await poster.deleteConnection('Ab1=');
      expect(seen[0]).toMatchObject({ method: 'DELETE', path: '/prod/@connections/Ab1%3D', body: '' });
      const auth = String(seen[0].headers.authorization);
      const signed = /SignedHeaders=([^,]+)/.exec(auth)![1].split(';');
      expect(auth).toBe(await sdkAuthorization('execute-api', 'eu-west-1', seen[0], signed, 'DELETE'));
    } finally {
      poster.destroy();
      server.close();
    }
  });

  test('errors carry the SDK shape: 410 GoneException, 429 LimitExceededException with their status', async () => {
    let n = 0;
    const { server, base } = await serve(() =>
      ++n === 1
        ? { status: 410, headers: { 'x-amzn-errortype': 'GoneException', 'content-type': 'application/json' }, body: '{"message":"gone"}' }
        : { status: 429, headers: { 'x-amzn-errortype': 'LimitExceededException:http://internal', 'content-type': 'application/json' }, body: '{"message":"Rate exceeded"}' },
    );
    const poster = new ManagementPoster(`${base}/prod`, { region: 'eu-west-1', credentials: async () => CREDS });
    try {
      await expect(poster.postToConnection('a', Buffer.from('x'))).rejects.toMatchObject({ name: 'GoneException', $metadata: { httpStatusCode: 410 } });
      await expect(poster.postToConnection('a', Buffer.from('x'))).rejects.toMatchObject({ name: 'LimitExceededException', $metadata: { httpStatusCode: 429 }, message: 'Rate exceeded' });
    } finally {
      poster.destroy();
      server.close();
    }
  });
});

describe('SQS FIFO sender', () => {
  test('signature of SendMessageBatch: the same as the AWS SDK signer', async () => {
    const { server, base, seen } = await serve(() => ({ status: 200, body: '{"Successful":[]}' }));
    try {
      const body = '{"QueueUrl":"q"}';
      const host = new URL(base).host;
      const headers = signJsonPost(host, 'AmazonSQS.SendMessageBatch', body, 'eu-west-1', 'sqs', CREDS, NOW);
      await fetch(base + '/', { method: 'POST', headers, body });
      const signed = /SignedHeaders=([^,]+)/.exec(headers.authorization)![1].split(';');
      expect(signed).toEqual(['content-type', 'host', 'x-amz-date', 'x-amz-security-token', 'x-amz-target']);
      expect(headers.authorization).toBe(await sdkAuthorization('sqs', 'eu-west-1', seen[0], signed));
    } finally {
      server.close();
    }
  });

  test('batches of at most 10 entries with group and deduplication ids; an entry failed by SQS (not the sender) is retried, a sender fault is reported', async () => {
    let call = 0;
    const { server, base, seen } = await serve((s) => {
      call++;
      const entries = (JSON.parse(s.body) as { Entries: { Id: string }[] }).Entries;
      // First call: entry 1 fails on SQS's side (retried), entry 2 is the sender's fault (reported).
      const failed = call === 1 ? [{ Id: entries[1].Id, SenderFault: false, Code: 'InternalError' }, { Id: entries[2].Id, SenderFault: true, Code: 'InvalidParameterValue' }] : [];
      return { status: 200, body: JSON.stringify({ Successful: entries.filter((e) => !failed.some((f) => f.Id === e.Id)).map((e) => ({ Id: e.Id })), Failed: failed }) };
    });
    const queue = new SqsFifoQueue(`${base}/123456789012/fanout.fifo`, { region: 'eu-west-1', credentials: async () => CREDS });
    try {
      const messages = Array.from({ length: 12 }, (_, i) => ({ body: `{"n":${i}}`, groupId: `shard-${i % 4}`, deduplicationId: `e-${i}` }));
      const { failed } = await queue.send(messages);
      expect(failed).toEqual([2]);
      const bodies = seen.map((s) => JSON.parse(s.body) as { QueueUrl: string; Entries: { Id: string; MessageGroupId: string; MessageDeduplicationId: string }[] });
      expect(bodies.map((b) => b.Entries.map((e) => e.Id))).toEqual([['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'], ['1'], ['10', '11']]);
      expect(bodies[0].Entries[3]).toMatchObject({ MessageGroupId: 'shard-3', MessageDeduplicationId: 'e-3' });
      expect(seen[0].headers['x-amz-target']).toBe('AmazonSQS.SendMessageBatch');
      expect(bodies[0].QueueUrl).toBe(`${base}/123456789012/fanout.fifo`);
    } finally {
      queue.destroy();
      server.close();
    }
  });
});

/** A stand-in of Secrets Manager's JSON 1.1 protocol: GetSecretValue of the secrets given, its error shapes otherwise. */
function secretsManager(secrets: Record<string, string>, fail: (n: number) => { status: number; type: string } | undefined = () => undefined) {
  let n = 0;
  return serve((s) => {
    n++;
    const f = fail(n);
    if (f) return { status: f.status, headers: { 'content-type': 'application/x-amz-json-1.1' }, body: JSON.stringify({ __type: f.type, message: `${f.type} (stand-in)` }) };
    if (s.method !== 'POST' || s.headers['x-amz-target'] !== 'secretsmanager.GetSecretValue' || s.headers['content-type'] !== 'application/x-amz-json-1.1') {
      return { status: 400, headers: { 'content-type': 'application/x-amz-json-1.1' }, body: JSON.stringify({ __type: 'com.amazon.coral.service#UnknownOperationException' }) };
    }
    const id = (JSON.parse(s.body) as { SecretId: string }).SecretId;
    if (!(id in secrets)) {
      return { status: 400, headers: { 'content-type': 'application/x-amz-json-1.1' }, body: JSON.stringify({ __type: 'ResourceNotFoundException', message: "Secrets Manager can't find the specified secret." }) };
    }
    return { status: 200, headers: { 'content-type': 'application/x-amz-json-1.1' }, body: JSON.stringify({ ARN: id, Name: 'redis-auth', SecretString: secrets[id], VersionId: 'v1', VersionStages: ['AWSCURRENT'], CreatedDate: 1.7e9 }) };
  });
}

const ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:redis-auth-AbCdEf';
const AWS_ENV = { AWS_REGION: 'eu-west-1', AWS_ACCESS_KEY_ID: CREDS.accessKeyId, AWS_SECRET_ACCESS_KEY: CREDS.secretAccessKey, AWS_SESSION_TOKEN: CREDS.sessionToken };

describe('Secrets Manager GetSecretValue (one signed request, no SDK)', () => {
  test('the request: POST / with X-Amz-Target secretsmanager.GetSecretValue, JSON 1.1, credentials from the Lambda environment, signed the same as the AWS SDK signer', async () => {
    const { server, base, seen } = await secretsManager({ [ARN]: 'plain-token' });
    try {
      const value = await getSecretString(ARN, { env: { ...AWS_ENV, AWS_ENDPOINT_URL_SECRETS_MANAGER: base }, now: () => NOW });
      expect(value).toBe('plain-token');
      expect(seen).toHaveLength(1);
      expect(seen[0]).toMatchObject({ method: 'POST', path: '/' });
      expect(JSON.parse(seen[0].body)).toEqual({ SecretId: ARN });
      expect(seen[0].headers['x-amz-security-token']).toBe(CREDS.sessionToken);
      expect(seen[0].headers['x-amz-date']).toBe('20261129T090000Z');
      const auth = String(seen[0].headers.authorization);
      expect(auth).toMatch(/^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/20261129\/eu-west-1\/secretsmanager\/aws4_request, SignedHeaders=/);
      const signed = /SignedHeaders=([^,]+)/.exec(auth)![1].split(';');
      expect(signed).toEqual(['content-type', 'host', 'x-amz-date', 'x-amz-security-token', 'x-amz-target']);
      expect(auth).toBe(await sdkAuthorization('secretsmanager', 'eu-west-1', seen[0], signed));
    } finally {
      server.close();
    }
  });

  test('the stand-in is the protocol the SDK speaks: the SDK client reads the same secret from it', async () => {
    const { server, base, seen } = await secretsManager({ [ARN]: 'plain-token' });
    const sdk = new SecretsManagerClient({ region: 'eu-west-1', endpoint: base, credentials: CREDS, maxAttempts: 1 });
    try {
      const out = await sdk.send(new GetSecretValueCommand({ SecretId: ARN }));
      expect(out.SecretString).toBe('plain-token');
      expect(seen[0].headers['x-amz-target']).toBe('secretsmanager.GetSecretValue');
      expect(seen[0].headers['content-type']).toBe('application/x-amz-json-1.1');
      expect(JSON.parse(seen[0].body)).toEqual({ SecretId: ARN });
    } finally {
      sdk.destroy();
      server.close();
    }
  });

  test('the Redis AUTH token: a plain string, or JSON with password, authToken or token', async () => {
    const { server, base } = await secretsManager({ a: 'plain', b: '{"password":"p1"}', c: '{"authToken":"p2"}', d: '{"token":"p3"}', e: '{"other":1}' });
    try {
      const env = { ...AWS_ENV, AWS_ENDPOINT_URL_SECRETS_MANAGER: base };
      expect(await Promise.all(['a', 'b', 'c', 'd', 'e'].map((id) => secretPassword(id, { env })))).toEqual(['plain', 'p1', 'p2', 'p3', '{"other":1}']);
    } finally {
      server.close();
    }
  });

  test('refusals are errors with the SDK shape and are not retried; throttling and 5xx are retried', async () => {
    const missing = await secretsManager({});
    const flaky = await secretsManager({ [ARN]: 'tok' }, (n) => (n === 1 ? { status: 400, type: 'ThrottlingException' } : n === 2 ? { status: 500, type: 'InternalServiceError' } : undefined));
    try {
      await expect(getSecretString(ARN, { env: { ...AWS_ENV, AWS_ENDPOINT_URL_SECRETS_MANAGER: missing.base } })).rejects.toMatchObject({ name: 'ResourceNotFoundException', $metadata: { httpStatusCode: 400 } });
      expect(missing.seen).toHaveLength(1);
      expect(await getSecretString(ARN, { env: { ...AWS_ENV, AWS_ENDPOINT_URL_SECRETS_MANAGER: flaky.base } })).toBe('tok');
      expect(flaky.seen).toHaveLength(3);
    } finally {
      missing.server.close();
      flaky.server.close();
    }
  });

  test('no credentials in the environment: a clear error, nothing sent', async () => {
    const { server, base, seen } = await secretsManager({ [ARN]: 'tok' });
    try {
      await expect(getSecretString(ARN, { env: { AWS_REGION: 'eu-west-1', AWS_ENDPOINT_URL_SECRETS_MANAGER: base } })).rejects.toThrow(/AWS_ACCESS_KEY_ID/);
      expect(seen).toHaveLength(0);
    } finally {
      server.close();
    }
  });

  test('a Lambda runtime with REDIS_SECRET_ARN reads the AUTH token at its first invocation and connects to a Redis that requires it', async () => {
    const redisServer = await RedisServer.start();
    const admin = createRedis({ url: redisServer.url, name: 'test-admin' });
    const { server, base, seen } = await secretsManager({ [ARN]: '{"password":"s3cret-auth-token"}' });
    let runtime: LambdaRuntime | undefined;
    try {
      await waitReady(admin);
      await admin.config('SET', 'requirepass', 's3cret-auth-token');
      runtime = LambdaRuntime.fromEnv({ ...AWS_ENV, AWS_ENDPOINT_URL_SECRETS_MANAGER: base, REDIS_URL: redisServer.url, REDIS_SECRET_ARN: ARN });
      const { redis } = await runtime.clients();
      expect(await redis.ping()).toBe('PONG');
      expect(seen).toHaveLength(1);
      expect(seen[0].headers['x-amz-target']).toBe('secretsmanager.GetSecretValue');
    } finally {
      await runtime?.close();
      admin.disconnect();
      server.close();
      await redisServer.destroy();
    }
  });
});
