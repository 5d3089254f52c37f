import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { timingSafeEqual } from 'node:crypto';
import { SignatureV4 } from '@smithy/signature-v4';
import { NodeSha256 } from '../server-sdk/src/sigv4';

/**
 * A stand-in for Lambda's Invoke API (`POST /2015-03-31/functions/{FunctionName}/invocations`, `RequestResponse`), so
 * the hooks of the local stack run through the same signed call as on AWS (`core/aws/lambda-invoke.ts` pointed here).
 * A function is a local JavaScript function or an HTTP endpoint (the payload POSTed, its answer returned). Like Lambda:
 * an unsigned or wrongly signed request gets 403, an unknown function 404 `ResourceNotFoundException`, a function that
 * throws 200 with `X-Amz-Function-Error: Unhandled` and `{"errorType","errorMessage"}`.
 */

/** A hook run in this process: the parsed payload in, the answer out (thrown errors are function errors). */
export type LocalFunction = (event: unknown) => unknown;

export interface LocalLambdaOptions {
  /** Functions by name: a local function, or the URL of an HTTP endpoint. */
  readonly functions?: Readonly<Record<string, LocalFunction | string>>;
  /** The credentials a caller must sign with (service `lambda`). */
  readonly credentials: { readonly accessKeyId: string; readonly secretAccessKey: string };
  readonly region: string;
}

const PATH = /^\/2015-03-31\/functions\/([^/]+)\/invocations$/;

export class LocalLambda {
  /** Every invocation that reached a function, in order (name and payload). */
  readonly invocations: { readonly name: string; readonly payload: unknown }[] = [];
  private readonly functions = new Map<string, LocalFunction | string>();

  private constructor(
    private readonly server: Server,
    /** `http://127.0.0.1:{port}`: the endpoint to give the invoker. */
    readonly url: string,
  ) {}

  static async start(options: LocalLambdaOptions): Promise<LocalLambda> {
    const bound: { self?: LocalLambda } = {};
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        bound.self!.serve(req.method ?? '', req.url ?? '/', req.headers as Record<string, string>, Buffer.concat(chunks).toString('utf8'), options).then(
          (a) => {
            res.writeHead(a.status, { 'content-type': 'application/json', ...a.headers });
            res.end(a.body);
          },
          () => {
            res.writeHead(500, { 'content-type': 'application/json', 'x-amzn-errortype': 'ServiceException' });
            res.end('{"message":"ServiceException"}');
          },
        );
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const self = new LocalLambda(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    bound.self = self;
    for (const [name, fn] of Object.entries(options.functions ?? {})) self.register(name, fn);
    return self;
  }

  /** Adds or replaces a function. */
  register(name: string, fn: LocalFunction | string): void {
    this.functions.set(name, fn);
  }

  private async serve(method: string, url: string, headers: Record<string, string>, body: string, options: LocalLambdaOptions): Promise<{ status: number; headers?: Record<string, string>; body: string }> {
    const path = url.split('?')[0];
    const m = PATH.exec(path);
    if (method !== 'POST' || !m) return { status: 404, headers: { 'x-amzn-errortype': 'UnknownOperationException' }, body: '{"message":"Unknown operation"}' };
    if (!(await signedBy(method, path, headers, body, options))) {
      return { status: 403, headers: { 'x-amzn-errortype': 'InvalidSignatureException' }, body: '{"message":"The request signature we calculated does not match the signature you provided."}' };
    }
    const requested = decodeURIComponent(m[1]);
    // A name, `name:qualifier`, or an ARN `arn:aws:lambda:region:account:function:name[:qualifier]`.
    const name = /:function:([^:]+)/.exec(requested)?.[1] ?? requested.split(':')[0];
    const fn = this.functions.get(name);
    if (fn === undefined) return { status: 404, headers: { 'x-amzn-errortype': 'ResourceNotFoundException' }, body: JSON.stringify({ Type: 'User', message: `Function not found: ${requested}` }) };
    let payload: unknown;
    try {
      payload = body === '' ? {} : JSON.parse(body);
    } catch {
      return { status: 400, headers: { 'x-amzn-errortype': 'InvalidRequestContentException' }, body: '{"Type":"User","message":"Could not parse request body into json"}' };
    }
    this.invocations.push({ name, payload });
    try {
      const answer = typeof fn === 'string' ? await postJson(fn, body) : JSON.stringify((await fn(payload)) ?? null);
      return { status: 200, headers: { 'x-amz-executed-version': '$LATEST' }, body: answer };
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      return { status: 200, headers: { 'x-amz-function-error': 'Unhandled' }, body: JSON.stringify({ errorType: e.name, errorMessage: e.message }) };
    }
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** Verifies SigV4 (service `lambda`) with `@smithy/signature-v4`, the AWS SDK's signer, over the headers the caller signed. */
async function signedBy(method: string, path: string, headers: Record<string, string>, body: string, options: LocalLambdaOptions): Promise<boolean> {
  const auth = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/lambda\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/.exec(headers.authorization ?? '');
  if (!auth || auth[1] !== options.credentials.accessKeyId || auth[3] !== options.region) return false;
  const amz = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(headers['x-amz-date'] ?? '');
  if (!amz) return false;
  const date = new Date(Date.UTC(+amz[1], +amz[2] - 1, +amz[3], +amz[4], +amz[5], +amz[6]));
  if (Math.abs(Date.now() - date.getTime()) > 300_000) return false;
  const signed = auth[4].split(';');
  const kept: Record<string, string> = {};
  for (const h of signed) {
    if (headers[h] === undefined) return false;
    kept[h] = headers[h];
  }
  const [hostname, port] = (headers.host ?? '').split(':');
  const signer = new SignatureV4({ service: 'lambda', region: options.region, credentials: options.credentials, sha256: NodeSha256, applyChecksum: false });
  // The path as sent: the signer encodes each segment again, as SigV4 wants for every service but S3.
  const expected = await signer.sign({ method, protocol: 'http:', hostname, port: port ? Number(port) : undefined, path, query: {}, headers: kept, body }, { signingDate: date, signableHeaders: new Set(signed) });
  const want = /Signature=([0-9a-f]{64})$/.exec(String(expected.headers.authorization))?.[1] ?? '';
  return want.length === auth[5].length && timingSafeEqual(Buffer.from(want), Buffer.from(auth[5]));
}

/** POSTs the payload to an HTTP hook and returns its body (a non-2xx answer is a function error). */
function postJson(url: string, body: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if ((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300) resolve(text);
        else reject(new Error(`the hook endpoint answered ${res.statusCode}`));
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}
