import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { HttpEvent, HttpResult } from '../lambda/shared/http';
import { LocalFaults, type LocalFault } from './faults';
import { LocalGuard, refuse } from './guard';
import { verifySignature, type LocalSignatureOptions } from './sigv4';

export type HttpHandler = (event: HttpEvent) => Promise<HttpResult>;

/** How a route is authorised on AWS, and so how the local front builds the authorizer context. */
export type LocalAuth = 'jwt' | 'iam';

export interface LocalRoute {
  readonly method: string;
  readonly path: string;
  readonly auth: LocalAuth;
  readonly handler: HttpHandler;
}

/** Local-only header naming the user a request acts as (stands in for a JWT `sub`). */
export const LOCAL_USER_HEADER = 'x-local-user';
/** The IAM caller the local front reports for IAM-authorised routes. */
export const LOCAL_IAM_ARN = 'arn:aws:iam::000000000000:user/local-backend';
const MAX_BODY = 10 * 1024 * 1024;

/** What the HTTP API stand-in does beyond routing. */
export interface HttpApiOptions {
  /** Verify SigV4 on IAM routes against these credentials (unsigned or wrongly signed: 403). Defaults to none: IAM routes take any caller as the local backend. */
  readonly signatures?: LocalSignatureOptions;
  /** Queued fault answers (tests). Defaults to none. */
  readonly faults?: LocalFaults;
}

/**
 * A stand-in for API Gateway's HTTP API (payload format 2.0): it builds the same event shape and
 * authorizer context the Lambda handlers get on AWS. JWT routes take the user from `x-local-user`
 * (401 like the JWT authorizer when absent); IAM routes report a fixed local backend principal.
 * Never expose it beyond loopback: it trusts that header. Browsers get only what `guard` allows:
 * another page's Origin or a non-loopback Host is refused with 403 before any handler runs, and CORS
 * is granted (with credentials) to the listed origins only. Defaults to a guard that lists no
 * origin (the stack passes one that lists its own and the configured ones).
 */
export function createHttpApi(routes: readonly LocalRoute[], guard: LocalGuard = new LocalGuard(), pages?: (req: IncomingMessage, res: ServerResponse) => boolean, options: HttpApiOptions = {}): Server {
  return createServer((req, res) => {
    const refusal = guard.check(req);
    if (refusal) return refuse(res, refusal);
    if (pages?.(req, res)) return; // GET pages of the local stack (the demo), behind the same guard
    const cors = () => guard.cors(req);
    serve(req, res, routes, cors, options).catch(() => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ message: 'Internal Server Error' }));
    });
  });
}

async function serve(req: IncomingMessage, res: ServerResponse, routes: readonly LocalRoute[], cors: () => Record<string, string>, options: HttpApiOptions): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (req.method === 'OPTIONS') {
    res.writeHead(204, {
      ...cors(),
      'access-control-allow-methods': 'POST, OPTIONS',
      'access-control-allow-headers': `content-type, authorization, ${LOCAL_USER_HEADER}`,
      'access-control-max-age': '600',
    });
    res.end();
    return;
  }
  const route = routes.find((r) => r.path === url.pathname && r.method === req.method);
  if (!route) {
    res.writeHead(404, { 'content-type': 'application/json', ...cors() });
    res.end(JSON.stringify({ message: 'Not Found' }));
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_BODY) {
      res.writeHead(413, { 'content-type': 'application/json', ...cors() });
      res.end(JSON.stringify({ message: 'Request Entity Too Large' }));
      return;
    }
    chunks.push(c as Buffer);
  }
  const user = req.headers[LOCAL_USER_HEADER];
  let authorizer: HttpEvent['requestContext']['authorizer'];
  if (route.auth === 'jwt') {
    if (typeof user !== 'string' || user === '') {
      res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer', ...cors() });
      res.end(JSON.stringify({ message: 'Unauthorized' }));
      return;
    }
    const now = Math.floor(Date.now() / 1000);
    authorizer = { jwt: { claims: { sub: user, iss: 'http://localhost/local-issuer', aud: 'realtime-local', iat: now, exp: now + 3600 }, scopes: null } };
  } else {
    // API Gateway's IAM authorisation runs before the route: a refused signature never reaches the handler.
    const refusal = options.signatures && (await verifySignature(req, url, Buffer.concat(chunks), options.signatures));
    if (refusal) {
      options.faults?.seen.push({ path: url.pathname, body: Buffer.concat(chunks).toString('utf8'), status: 403, faulted: false });
      res.writeHead(403, { 'content-type': 'application/json', ...cors() });
      res.end(JSON.stringify({ message: refusal }));
      return;
    }
    authorizer = { iam: { userArn: LOCAL_IAM_ARN, callerId: 'AIDALOCALBACKEND', accountId: '000000000000', principalOrgId: null } };
  }
  const body = Buffer.concat(chunks);
  const fault = options.faults?.take(url.pathname);
  if (fault && !fault.afterHandler) return answerFault(res, fault, cors, options.faults!, url.pathname, body);
  const result = await route.handler(toEvent(req, url, body, route, authorizer));
  if (fault) return answerFault(res, fault, cors, options.faults!, url.pathname, body);
  options.faults?.seen.push({ path: url.pathname, body: body.toString('utf8'), status: result.statusCode, faulted: false });
  res.writeHead(result.statusCode, { ...cors(), ...(result.headers as Record<string, string>) });
  res.end(result.body ?? '');
}

function answerFault(res: ServerResponse, fault: LocalFault, cors: () => Record<string, string>, faults: LocalFaults, path: string, body: Buffer): void {
  faults.seen.push({ path, body: body.toString('utf8'), status: fault.status, faulted: true });
  res.writeHead(fault.status, { 'content-type': 'application/json', ...cors(), ...fault.headers });
  res.end(LocalFaults.bodyOf(fault));
}

function toEvent(req: IncomingMessage, url: URL, body: Buffer, route: LocalRoute, authorizer: HttpEvent['requestContext']['authorizer']): HttpEvent {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && k !== 'cookie') headers[k] = Array.isArray(v) ? v.join(',') : v;
  const query: Record<string, string> = {};
  for (const [k, v] of url.searchParams) query[k] = query[k] ? `${query[k]},${v}` : v;
  const type = headers['content-type'] ?? '';
  const text = body.length === 0 || /^(text\/|application\/(.+\+)?json)/i.test(type);
  const now = new Date();
  const routeKey = `${route.method} ${route.path}`;
  return {
    version: '2.0',
    routeKey,
    rawPath: url.pathname,
    rawQueryString: url.search.slice(1),
    cookies: req.headers.cookie ? req.headers.cookie.split(/;\s*/) : undefined,
    headers,
    queryStringParameters: Object.keys(query).length ? query : undefined,
    requestContext: {
      accountId: '000000000000',
      apiId: 'local',
      domainName: headers.host ?? 'localhost',
      domainPrefix: (headers.host ?? 'localhost').split('.')[0],
      http: { method: route.method, path: url.pathname, protocol: `HTTP/${req.httpVersion}`, sourceIp: req.socket.remoteAddress ?? '127.0.0.1', userAgent: headers['user-agent'] ?? '' },
      requestId: randomUUID(),
      routeKey,
      stage: '$default',
      time: now.toUTCString(),
      timeEpoch: now.getTime(),
      authorizer,
    },
    body: body.length ? (text ? body.toString('utf8') : body.toString('base64')) : undefined,
    isBase64Encoded: !text,
  } as HttpEvent;
}
