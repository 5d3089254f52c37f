import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type Redis from 'ioredis';
import { containerCredentials, refreshingCredentials, runtimeCredentials } from '../../core/aws/signer';
import { registerConnection } from '../../core/connections';
import { fanoutDeduplicationId } from '../../core/fanout-queue';
import { ElbApiError, TargetHealthClient } from '../../core/aws/elb';
import type { RealtimeServer } from '../../service/realtime-server';
import { ContainerCredentialsEndpoint, ElbEndpoint, sdkAuthorization, SqsEndpoint } from '../support/aws-stand-ins';
import { connectRedis, coreConfig, eventually, startService, ticketFor, uid } from '../support/harness';
import { connectWs } from './ws-support';

/**
 * The AWS calls an SSE task makes on ECS, against local stand-ins of the endpoints: credentials of the task role from
 * the container credentials endpoint (relative and full URI, token and token file, refreshed before `Expiration` on an
 * injected clock), and Elastic Load Balancing's `DescribeTargetHealth` over the Query protocol, SigV4-signed the same
 * as the AWS SDK's signer; and, in `webSocket.mode` `both`, SQS `SendMessageBatch` of a `/live` publish for the
 * connections still on API Gateway, signed with the same credentials.
 */

const TARGET_GROUP = 'arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/Realt-SseTa-1A2B3C/0123456789abcdef';

let creds: ContainerCredentialsEndpoint;
beforeAll(async () => {
  creds = new ContainerCredentialsEndpoint();
  await creds.start();
});
afterAll(() => creds.close());

describe('container credentials (the ECS task role)', () => {
  test('AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: GET on the agent address + the URI, no Authorization header; the answer read as credentials with their Expiration', async () => {
    const before = creds.requests.length;
    const c = await containerCredentials({ env: { AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: creds.relativeUri }, host: creds.base })();
    const issued = creds.issued.at(-1)!;
    expect(c).toEqual({ accessKeyId: issued.accessKeyId, secretAccessKey: issued.secretAccessKey, sessionToken: issued.sessionToken, expiration: new Date(issued.expiration) });
    expect(creds.requests.slice(before).map((r) => [r.method, r.path, r.headers.authorization])).toEqual([['GET', creds.relativeUri, undefined]]);
  });

  test('AWS_CONTAINER_CREDENTIALS_FULL_URI with AWS_CONTAINER_AUTHORIZATION_TOKEN; a wrong token is a clear error without the token in it', async () => {
    const env = { AWS_CONTAINER_CREDENTIALS_FULL_URI: `${creds.base}${creds.fullPath}`, AWS_CONTAINER_AUTHORIZATION_TOKEN: creds.token };
    expect((await containerCredentials({ env })()).accessKeyId).toBe(creds.issued.at(-1)!.accessKeyId);
    expect(creds.requests.at(-1)!.headers.authorization).toBe(creds.token);
    const wrong = containerCredentials({ env: { ...env, AWS_CONTAINER_AUTHORIZATION_TOKEN: 'stolen-guess' } })();
    await expect(wrong).rejects.toMatchObject({ name: 'CredentialsProviderError', message: 'the container credentials endpoint answered 401' });
  });

  test('AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE is read on every fetch (the token rotates)', async () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'token-')), 'token');
    fs.writeFileSync(file, `${creds.token}\n`);
    const provider = containerCredentials({ env: { AWS_CONTAINER_CREDENTIALS_FULL_URI: `${creds.base}${creds.fullPath}`, AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: file, AWS_CONTAINER_AUTHORIZATION_TOKEN: 'ignored-when-a-file-is-set' } });
    await provider();
    creds.token = 'container-token-2';
    fs.writeFileSync(file, creds.token);
    await provider();
    expect(creds.requests.slice(-2).map((r) => r.headers.authorization)).toEqual(['container-token-1', 'container-token-2']);
  });

  test('refreshed before Expiration: kept while more than 5 minutes remain, fetched again after (virtual clock); one fetch for concurrent callers', async () => {
    let now = Date.parse('2026-12-06T08:00:00Z');
    creds.now = () => now;
    creds.lifetimeMs = 3600_000;
    const provider = refreshingCredentials(containerCredentials({ env: { AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: creds.relativeUri }, host: creds.base }), { now: () => now });
    const before = creds.requests.length;
    const [a, b] = await Promise.all([provider(), provider()]);
    expect(b).toBe(a);
    expect(creds.requests.length - before).toBe(1);
    expect(a.expiration).toEqual(new Date('2026-12-06T09:00:00Z'));

    now = Date.parse('2026-12-06T08:54:59Z'); // 5 min 1 s left
    expect(await provider()).toBe(a);
    expect(creds.requests.length - before).toBe(1);

    now = Date.parse('2026-12-06T08:55:01Z'); // 4 min 59 s left: refreshed
    const c = await provider();
    expect(creds.requests.length - before).toBe(2);
    expect(c.accessKeyId).not.toBe(a.accessKeyId);
    expect(c.expiration).toEqual(new Date('2026-12-06T09:55:01Z'));
    creds.now = Date.now;
    creds.lifetimeMs = 6 * 3600_000;
  });

  test('a failed refresh keeps the credentials until they expire, then the failure is thrown; the next call fetches again', async () => {
    let now = Date.parse('2026-12-06T08:00:00Z');
    creds.now = () => now;
    creds.lifetimeMs = 3600_000;
    const provider = refreshingCredentials(containerCredentials({ env: { AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: creds.relativeUri }, host: creds.base }), { now: () => now });
    const first = await provider();
    now = Date.parse('2026-12-06T08:58:00Z');
    creds.failNext = 1;
    expect(await provider()).toBe(first);
    now = Date.parse('2026-12-06T09:00:01Z');
    creds.failNext = 1;
    await expect(provider()).rejects.toMatchObject({ name: 'CredentialsProviderError', message: 'the container credentials endpoint answered 500' });
    const fresh = await provider();
    expect(fresh.accessKeyId).not.toBe(first.accessKeyId);
    creds.now = Date.now;
    creds.lifetimeMs = 6 * 3600_000;
  });

  test('runtimeCredentials: the environment\'s keys when set (Lambda), else the container endpoint (ECS), else a clear error', async () => {
    expect(await runtimeCredentials({ AWS_ACCESS_KEY_ID: 'AKID', AWS_SECRET_ACCESS_KEY: 'secret', AWS_CONTAINER_CREDENTIALS_FULL_URI: `${creds.base}${creds.fullPath}` })()).toMatchObject({ accessKeyId: 'AKID' });
    const fromContainer = await runtimeCredentials({ AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: creds.relativeUri }, { host: creds.base })();
    expect(fromContainer.accessKeyId).toBe(creds.issued.at(-1)!.accessKeyId);
    await expect(runtimeCredentials({})()).rejects.toMatchObject({ name: 'CredentialsProviderError', message: expect.stringMatching(/no AWS credentials/) });
  });

  test('an answer that is not credentials is a clear error', async () => {
    await expect(containerCredentials({ env: { AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: '/v2/credentials/unknown' }, host: creds.base })()).rejects.toMatchObject({ message: 'the container credentials endpoint answered 404' });
    await expect(containerCredentials({ env: {} })()).rejects.toMatchObject({ name: 'CredentialsProviderError', message: expect.stringMatching(/AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and AWS_CONTAINER_CREDENTIALS_FULL_URI are not set/) });
  });
});

describe('DescribeTargetHealth (Elastic Load Balancing v2, Query protocol)', () => {
  let elb: ElbEndpoint;
  beforeAll(async () => {
    elb = new ElbEndpoint(TARGET_GROUP, 'eu-west-1', creds);
    await elb.start();
  });
  afterAll(() => elb.close());
  const client = (over: Partial<ConstructorParameters<typeof TargetHealthClient>[0]> = {}) =>
    new TargetHealthClient({ targetGroupArn: TARGET_GROUP, credentials: runtimeCredentials({ AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: creds.relativeUri }, { host: creds.base }), env: { AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2: elb.base }, ...over });

  test('the request: a form-encoded POST / with Action, Version 2015-12-01, the target group and one target; signed with the task role\'s credentials exactly as the AWS SDK signer does', async () => {
    elb.states.set('10.0.1.23:8080', { state: 'healthy' });
    expect(await client().describe('10.0.1.23', 8080)).toEqual({ state: 'healthy', reason: undefined });
    const seen = elb.requests.at(-1)!;
    expect(seen.method).toBe('POST');
    expect(seen.headers['content-type']).toBe('application/x-www-form-urlencoded; charset=utf-8');
    expect(Object.fromEntries(new URLSearchParams(seen.body))).toEqual({
      Action: 'DescribeTargetHealth',
      Version: '2015-12-01',
      TargetGroupArn: TARGET_GROUP,
      'Targets.member.1.Id': '10.0.1.23',
      'Targets.member.1.Port': '8080',
    });
    const auth = String(seen.headers.authorization);
    const issued = creds.find(/Credential=([^/]+)/.exec(auth)![1])!;
    expect(seen.headers['x-amz-security-token']).toBe(issued.sessionToken);
    expect(auth).toMatch(/Credential=ASIATASKROLE\d+\/\d{8}\/eu-west-1\/elasticloadbalancing\/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, /);
    expect(auth).toBe(await sdkAuthorization('elasticloadbalancing', 'eu-west-1', seen, issued));
  });

  test('the answer: draining with its reason; an unregistered target is unused', async () => {
    elb.states.set('10.0.1.23:8080', { state: 'draining', reason: 'Target.DeregistrationInProgress' });
    expect(await client().describe('10.0.1.23', 8080)).toEqual({ state: 'draining', reason: 'Target.DeregistrationInProgress' });
    expect(await client().describe('10.0.9.9', 8080)).toEqual({ state: 'unused', reason: 'Target.NotRegistered' });
  });

  test('errors: the XML error code (an unknown target group; a signature by credentials the endpoint never issued)', async () => {
    const other = TARGET_GROUP.replace('0123456789abcdef', 'fedcba9876543210');
    await expect(client({ targetGroupArn: other }).describe('10.0.1.23', 8080)).rejects.toMatchObject({ name: 'ElbApiError', code: 'TargetGroupNotFound', status: 400 });
    const forged = client({ credentials: async () => ({ accessKeyId: 'AKIDFORGED', secretAccessKey: 'x' }) });
    await expect(forged.describe('10.0.1.23', 8080)).rejects.toMatchObject({ code: 'InvalidClientTokenId', status: 403 });
    const issued = creds.issued.at(-1)!;
    const wrongSecret = client({ credentials: async () => ({ accessKeyId: issued.accessKeyId, sessionToken: issued.sessionToken, secretAccessKey: `${issued.secretAccessKey}x` }) });
    await expect(wrongSecret.describe('10.0.1.23', 8080)).rejects.toMatchObject({ code: 'SignatureDoesNotMatch', status: 403 });
    expect(() => client({ targetGroupArn: 'arn:aws:ecs:eu-west-1:123456789012:service/x' })).toThrow(ElbApiError);
  });

  test('endpoint: the regional one from the ARN (China partition included) unless an endpoint variable is set', () => {
    const url = (arn: string) => (new TargetHealthClient({ targetGroupArn: arn, credentials: async () => ({ accessKeyId: 'a', secretAccessKey: 'b' }), env: {} }) as unknown as { endpoint: URL }).endpoint.href;
    expect(url(TARGET_GROUP)).toBe('https://elasticloadbalancing.eu-west-1.amazonaws.com/');
    expect(url(TARGET_GROUP.replace('arn:aws:', 'arn:aws-cn:').replace('eu-west-1', 'cn-north-1'))).toBe('https://elasticloadbalancing.cn-north-1.amazonaws.com.cn/');
  });
});

describe('mode both on ECS: a /live publish is handed to the fan-out queue (SQS), signed with the task role', () => {
  let sqs: SqsEndpoint;
  let redis: Redis;
  let service: RealtimeServer;
  let base: string;
  beforeAll(async () => {
    // The queue URL's host is not an SQS one, so the sender signs for AWS_REGION (or us-east-1), as it would anywhere.
    sqs = new SqsEndpoint(process.env.AWS_REGION ?? 'us-east-1', creds);
    await sqs.start();
    redis = await connectRedis();
    ({ service, base } = await startService(
      { WS_FANOUT_QUEUE_URL: `${sqs.base}/123456789012/Realtime-WebSocketFanoutQueue.fifo`, WS_FANOUT_SHARDS: '2' },
      { env: { AWS_CONTAINER_CREDENTIALS_FULL_URI: `${creds.base}${creds.fullPath}`, AWS_CONTAINER_AUTHORIZATION_TOKEN: creds.token } },
    ));
  });
  afterAll(async () => {
    await service.close();
    redis.disconnect();
    await sqs.close();
  });

  test('one work item per shard, in the shard\'s message group, deduplicated by event and shard; none for a channel without API Gateway subscribers', async () => {
    const ch = `chat:${uid()}`;
    const quiet = `chat:${uid()}`;
    // A connection on API Gateway, registered as $connect does.
    await registerConnection('gw-conn-1', { sub: 'ivy', grant: [ch], channels: [ch] }, { redis, config: coreConfig() });
    const onTasks = await connectWs(`${base.replace(/^http/, 'ws')}/live?ticket=${await ticketFor(redis, 'jon', [ch, quiet], 'ws')}`);
    try {
      const r = await onTasks.request({ action: 'publish', channel: ch, type: 'm', data: 'from-live' }, 'published');
      await eventually(() => sqs.batches.length === 1, 10_000, 'SendMessageBatch');
      const entries = sqs.batches[0].Entries;
      expect(entries.map((e) => [e.MessageGroupId, e.MessageDeduplicationId])).toEqual([
        ['shard-0', fanoutDeduplicationId(ch, Number(r.id), 0)],
        ['shard-1', fanoutDeduplicationId(ch, Number(r.id), 1)],
      ]);
      for (const [i, e] of entries.entries()) {
        const work = JSON.parse(e.MessageBody) as { kind: string; channel: string; envelope: string; shard: number; shards: number };
        expect(work).toMatchObject({ kind: 'fanout', channel: ch, shard: i, shards: 2 });
        expect(JSON.parse(work.envelope)).toMatchObject({ id: r.id, channel: ch, data: 'from-live' });
      }
      // Signed with the task role's credentials, fetched once and kept.
      const auth = String(sqs.requests[0].headers.authorization);
      expect(creds.find(/Credential=([^/]+)/.exec(auth)![1])).toBeDefined();

      const q = await onTasks.request({ action: 'publish', channel: quiet, type: 'm', data: 'nobody-on-gateway' }, 'published');
      await onTasks.until((c) => c.events(quiet).some((e) => e.id === q.id));
      expect(sqs.requests).toHaveLength(1);
    } finally {
      onTasks.close();
    }
  });
});
