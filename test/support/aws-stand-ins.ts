import { createHash, createHmac, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignatureV4 } from '@smithy/signature-v4';

/**
 * Local stand-ins of the AWS endpoints an SSE task calls on ECS, faithful to the documented wire formats, and each
 * checking the SigV4 signature of what it receives with the AWS SDK's own signer (@smithy/signature-v4) against the
 * credentials the credentials stand-in issued:
 *
 * - {@link ContainerCredentialsEndpoint}: the ECS agent's container credentials endpoint (`GET
 *   169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`, or a full URI with an `Authorization` token), answering
 *   `{AccessKeyId, SecretAccessKey, Token, Expiration, RoleArn}`;
 * - {@link TaskMetadataEndpoint}: the task metadata endpoint v4 `GET ${ECS_CONTAINER_METADATA_URI_V4}/task`;
 * - {@link ElbEndpoint}: Elastic Load Balancing v2's Query protocol for `DescribeTargetHealth` (form-encoded POST,
 *   `Version=2015-12-01`, XML answer; errors as `<ErrorResponse><Error><Type/><Code/><Message/></Error>`);
 * - {@link SqsEndpoint}: SQS's AWS JSON 1.0 `SendMessageBatch`.
 */

/** A SHA-256 for @smithy/signature-v4 over node:crypto. */
export class Sha256 {
  private readonly h;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    const key = secret === undefined || typeof secret === 'string' ? secret : Buffer.from(ArrayBuffer.isView(secret) ? new Uint8Array(secret.buffer, secret.byteOffset, secret.byteLength) : new Uint8Array(secret));
    this.h = key ? createHmac('sha256', key) : createHash('sha256');
  }
  update(d: string | ArrayBuffer | ArrayBufferView): void {
    this.h.update(typeof d === 'string' ? d : ArrayBuffer.isView(d) ? new Uint8Array(d.buffer, d.byteOffset, d.byteLength) : new Uint8Array(d));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.h.digest());
  }
  reset(): void {}
}

export interface IssuedCredentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
}

export interface SeenRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
}

/** The Authorization header the AWS SDK's signer computes for `seen`, signed at its own x-amz-date. */
export async function sdkAuthorization(service: string, region: string, seen: SeenRequest, creds: IssuedCredentials): Promise<string> {
  const auth = String(seen.headers.authorization ?? '');
  const signed = (/SignedHeaders=([^,]+)/.exec(auth)?.[1] ?? '').split(';');
  const headers: Record<string, string> = {};
  for (const h of signed) if (h !== 'x-amz-date' && h !== 'x-amz-security-token' && h) headers[h] = String(seen.headers[h]);
  const amzDate = String(seen.headers['x-amz-date']);
  const signingDate = new Date(`${amzDate.slice(0, 4)}-${amzDate.slice(4, 6)}-${amzDate.slice(6, 8)}T${amzDate.slice(9, 11)}:${amzDate.slice(11, 13)}:${amzDate.slice(13, 15)}Z`);
  const signer = new SignatureV4({ service, region, credentials: creds, sha256: Sha256, applyChecksum: false });
  const out = await signer.sign({ method: seen.method, protocol: 'http:', hostname: '127.0.0.1', path: seen.path.split('?')[0], headers, body: seen.body }, { signingDate });
  return String(out.headers.authorization);
}

abstract class StandIn {
  readonly requests: SeenRequest[] = [];
  private readonly server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const seen = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      this.requests.push(seen);
      Promise.resolve(this.answer(seen, res)).catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500).end(String(err));
      });
    });
  });
  base = '';

  protected abstract answer(seen: SeenRequest, res: ServerResponse): void | Promise<void>;

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.base = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this.base;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/**
 * The ECS agent's credentials endpoint: `GET /v2/credentials/<id>` (what `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`
 * names) and `GET /full/<id>` behind an `Authorization` token (the full-URI form). Every request issues new
 * credentials, valid `lifetimeMs` from `now()`; the stand-ins below accept any of them.
 */
export class ContainerCredentialsEndpoint extends StandIn {
  readonly relativeUri = `/v2/credentials/${randomBytes(8).toString('hex')}`;
  readonly fullPath = `/full/${randomBytes(8).toString('hex')}`;
  /** The token the full-URI form requires. */
  token = 'container-token-1';
  lifetimeMs = 6 * 3600_000;
  now: () => number = Date.now;
  /** Answer the next n requests with a 500 (an agent that is briefly unavailable). */
  failNext = 0;
  readonly issued: (IssuedCredentials & { expiration: string })[] = [];

  protected answer(seen: SeenRequest, res: ServerResponse): void {
    if (seen.method !== 'GET' || (seen.path !== this.relativeUri && seen.path !== this.fullPath)) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"code":"NotFound","message":"no such credentials"}');
      return;
    }
    if (seen.path === this.fullPath && seen.headers.authorization !== this.token) {
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"code":"AccessDenied","message":"invalid authorization token"}');
      return;
    }
    if (this.failNext > 0) {
      this.failNext--;
      res.writeHead(500, { 'content-type': 'application/json' }).end('{"code":"InternalError","message":"try again"}');
      return;
    }
    const n = this.issued.length + 1;
    const creds = {
      accessKeyId: `ASIATASKROLE${String(n).padStart(8, '0')}`,
      secretAccessKey: randomBytes(30).toString('base64'),
      sessionToken: `token-${n}-${randomBytes(12).toString('base64url')}`,
      expiration: new Date(this.now() + this.lifetimeMs).toISOString().replace(/\.\d{3}Z$/, 'Z'),
    };
    this.issued.push(creds);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ RoleArn: 'arn:aws:iam::123456789012:role/SseTaskRole', AccessKeyId: creds.accessKeyId, SecretAccessKey: creds.secretAccessKey, Token: creds.sessionToken, Expiration: creds.expiration }));
  }

  /** The credentials issued under `accessKeyId`. */
  find(accessKeyId: string): IssuedCredentials | undefined {
    return this.issued.find((c) => c.accessKeyId === accessKeyId);
  }
}

/** The task metadata endpoint v4: `GET <base>/v4/<id>/task`; `serves: 'garbage'` answers a malformed body. */
export class TaskMetadataEndpoint extends StandIn {
  desired = 'RUNNING';
  serves: 'json' | 'garbage' = 'json';
  readonly ip = '10.0.1.23';
  get polls(): number {
    return this.requests.length;
  }
  uri(): string {
    return `${this.base}/v4/abc`;
  }

  protected answer(seen: SeenRequest, res: ServerResponse): void {
    if (seen.path !== '/v4/abc/task') {
      res.writeHead(404).end();
      return;
    }
    if (this.serves === 'garbage') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{not json');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        Cluster: 'c',
        TaskARN: 'arn:aws:ecs:eu-west-1:123456789012:task/c/abc',
        DesiredStatus: this.desired,
        KnownStatus: 'RUNNING',
        LaunchType: 'FARGATE',
        Containers: [{ Name: 'Sse', DesiredStatus: this.desired, KnownStatus: 'RUNNING', Networks: [{ NetworkMode: 'awsvpc', IPv4Addresses: [this.ip] }] }],
      }),
    );
  }
}

function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Checks a request's SigV4 against the credentials `creds` issued; resolves with an error code, or undefined when valid. */
async function verify(seen: SeenRequest, service: string, region: string, creds: ContainerCredentialsEndpoint): Promise<string | undefined> {
  const auth = String(seen.headers.authorization ?? '');
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, SignedHeaders=[^,]+, Signature=[0-9a-f]{64}$/.exec(auth);
  if (!m) return 'IncompleteSignature';
  const issued = creds.find(m[1]);
  if (!issued) return 'InvalidClientTokenId';
  if (m[3] !== region || m[4] !== service) return 'SignatureDoesNotMatch';
  if (issued.sessionToken && seen.headers['x-amz-security-token'] !== issued.sessionToken) return 'InvalidClientTokenId';
  return (await sdkAuthorization(service, region, seen, issued)) === auth ? undefined : 'SignatureDoesNotMatch';
}

/**
 * Elastic Load Balancing v2 for one target group: `DescribeTargetHealth` over the Query protocol, signature checked.
 * `states` holds each registered target's health by `ip:port`; any other target is `unused` / `Target.NotRegistered`.
 */
export class ElbEndpoint extends StandIn {
  readonly states = new Map<string, { state: string; reason?: string }>();
  /** Requests that were answered 200. */
  answered = 0;
  /**
   * Set: every signed `DescribeTargetHealth` is refused as over the account's request rate, `400` with this code and
   * `Rate exceeded` ("Request throttling for the ELB API" names `ThrottlingException`; the Query API answers `Throttling`).
   */
  throttle: 'Throttling' | 'ThrottlingException' | undefined;
  /** Requests refused by {@link throttle}. */
  throttled = 0;

  constructor(
    readonly targetGroupArn: string,
    readonly region: string,
    private readonly creds: ContainerCredentialsEndpoint,
  ) {
    super();
  }

  private error(res: ServerResponse, status: number, code: string, message: string): void {
    res.writeHead(status, { 'content-type': 'text/xml' });
    res.end(`<ErrorResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"><Error><Type>Sender</Type><Code>${code}</Code><Message>${xmlEscape(message)}</Message></Error><RequestId>${randomBytes(8).toString('hex')}</RequestId></ErrorResponse>`);
  }

  protected async answer(seen: SeenRequest, res: ServerResponse): Promise<void> {
    if (seen.method !== 'POST' || seen.path !== '/' || !String(seen.headers['content-type']).startsWith('application/x-www-form-urlencoded')) {
      this.error(res, 400, 'InvalidAction', 'The Query protocol is a form-encoded POST to /');
      return;
    }
    const bad = await verify(seen, 'elasticloadbalancing', this.region, this.creds);
    if (bad) {
      this.error(res, 403, bad, 'The request signature we calculated does not match the signature you provided.');
      return;
    }
    if (this.throttle) {
      this.throttled++;
      this.error(res, 400, this.throttle, 'Rate exceeded');
      return;
    }
    const p = new URLSearchParams(seen.body);
    if (p.get('Action') !== 'DescribeTargetHealth') {
      this.error(res, 400, 'InvalidAction', `Could not find operation ${p.get('Action')} for version 2015-12-01`);
      return;
    }
    if (p.get('Version') !== '2015-12-01') {
      this.error(res, 400, 'InvalidAction', 'Unsupported Version');
      return;
    }
    if (p.get('TargetGroupArn') !== this.targetGroupArn) {
      this.error(res, 400, 'TargetGroupNotFound', `One or more target groups not found`);
      return;
    }
    const members: string[] = [];
    for (let i = 1; p.has(`Targets.member.${i}.Id`); i++) {
      const id = p.get(`Targets.member.${i}.Id`)!;
      const port = p.get(`Targets.member.${i}.Port`) ?? '';
      const h = this.states.get(`${id}:${port}`) ?? { state: 'unused', reason: 'Target.NotRegistered' };
      const reason = h.reason ? `<Reason>${h.reason}</Reason><Description>${xmlEscape(`Target state: ${h.state}`)}</Description>` : '';
      members.push(`<member><HealthCheckPort>${port}</HealthCheckPort><TargetHealth><State>${h.state}</State>${reason}</TargetHealth><Target><Port>${port}</Port><Id>${xmlEscape(id)}</Id></Target></member>`);
    }
    this.answered++;
    res.writeHead(200, { 'content-type': 'text/xml' });
    res.end(
      `<DescribeTargetHealthResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"><DescribeTargetHealthResult><TargetHealthDescriptions>${members.join('')}</TargetHealthDescriptions></DescribeTargetHealthResult><ResponseMetadata><RequestId>${randomBytes(8).toString('hex')}</RequestId></ResponseMetadata></DescribeTargetHealthResponse>`,
    );
  }
}

/** SQS's `SendMessageBatch` (AWS JSON 1.0) for FIFO queues, signature checked; every entry accepted. */
export class SqsEndpoint extends StandIn {
  readonly batches: { QueueUrl: string; Entries: { Id: string; MessageBody: string; MessageGroupId: string; MessageDeduplicationId: string }[] }[] = [];
  /** Where each accepted batch also goes before the answer (e.g. a local FIFO queue that a worker consumes). Defaults to none. */
  onBatch?: (batch: SqsEndpoint['batches'][number]) => Promise<void>;

  constructor(
    readonly region: string,
    private readonly creds: ContainerCredentialsEndpoint,
  ) {
    super();
  }

  protected async answer(seen: SeenRequest, res: ServerResponse): Promise<void> {
    const fail = (status: number, type: string, message: string) => {
      res.writeHead(status, { 'content-type': 'application/x-amz-json-1.0', 'x-amzn-query-error': `${type};Sender` });
      res.end(JSON.stringify({ __type: `com.amazonaws.sqs#${type}`, message }));
    };
    if (seen.headers['x-amz-target'] !== 'AmazonSQS.SendMessageBatch' || seen.headers['content-type'] !== 'application/x-amz-json-1.0') {
      fail(400, 'InvalidAction', 'only SendMessageBatch');
      return;
    }
    const bad = await verify(seen, 'sqs', this.region, this.creds);
    if (bad) {
      fail(403, bad, 'The request signature we calculated does not match the signature you provided.');
      return;
    }
    const batch = JSON.parse(seen.body) as SqsEndpoint['batches'][number];
    this.batches.push(batch);
    await this.onBatch?.(batch);
    res.writeHead(200, { 'content-type': 'application/x-amz-json-1.0' });
    res.end(JSON.stringify({ Successful: batch.Entries.map((e) => ({ Id: e.Id, MessageId: randomBytes(8).toString('hex'), MD5OfMessageBody: createHash('md5').update(e.MessageBody).digest('hex') })) }));
  }
}
