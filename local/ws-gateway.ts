import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { errorBody } from '../core/errors';
import { listen, shutdown } from '../service/net';
import { LocalGuard, refuse } from './guard';
import type { WsAuthorizerEvent, WsAuthorizerResult, WsEvent, WsRequestContext, WsResult } from '../lambda/shared/ws';

/**
 * A stand-in for an API Gateway WebSocket API stage, for the same Lambda handlers that run on AWS.
 *
 * - `ws://host:port/{stage}?ticket=…`: the REQUEST authorizer runs first (identity source
 *   `route.request.querystring.ticket`: no ticket is a 401 without calling it; Deny is a 403; an
 *   authorizer that throws `Unauthorized` is a 401, anything else a 500), then `$connect` (a non-2xx
 *   answer rejects the upgrade with that status).
 * - Frames are routed by `$request.body.action` to the named route, else to `$default`; handlers'
 *   return values are not sent (no route responses, as the CDK stack configures), replies go through
 *   the management API. A handler that throws makes the client receive API Gateway's
 *   `{"message":"Internal server error",...}` frame.
 * - Frames over 32 KB close the socket with 1009; sockets without a client frame for 10 minutes,
 *   and every socket after 2 hours, are closed with 1001; `$disconnect` runs after every close.
 * - The management API of the stage on the same port: `POST|GET|DELETE /{stage}/@connections/{id}`,
 *   410 `GoneException` for unknown connections (and for a connection still inside `$connect`),
 *   413 over 128 KB, 403 without a SigV4 `Authorization` header (not verified: any credentials do),
 *   and optionally 429 `LimitExceededException` (what PostToConnection answers when throttled) by a
 *   deterministic rule, to exercise retries: the first n calls, every k-th call, or the first n calls
 *   for one connection. The rule counts calls, not time, so a test gets the same number of 429s on a
 *   loaded machine as on an idle one. While a rule is set, every call is logged (`managementCalls`:
 *   connection, event id, arrival time, refused or not), so a test can read retries and their spacing.
 *
 * - Browsers: an upgrade or request whose `Origin` the guard does not list, or whose `Host` is not a
 *   loopback name, is refused with 403 JSON before the authorizer runs (API Gateway itself checks no
 *   Origin: on AWS the ticket is the only key; locally any page could otherwise use the stack).
 *
 * Loopback only: it trusts whatever the authorizer allows and checks no signatures.
 */

export type AuthorizerHandler = (event: WsAuthorizerEvent) => Promise<WsAuthorizerResult>;
export type RouteHandler = (event: WsEvent) => Promise<WsResult | undefined | void>;

export interface WsGatewayHandlers {
  readonly authorizer: AuthorizerHandler;
  readonly connect: RouteHandler;
  readonly disconnect: RouteHandler;
  /** `$default`: frames whose action names no route. */
  readonly default: RouteHandler;
  /** Routes by action value. */
  readonly routes?: Readonly<Record<string, RouteHandler>>;
}

/**
 * Which management API calls are refused with 429 `LimitExceededException`, counted in calls (those
 * with an `Authorization` header) from the moment the rule is set. Both fields may be combined:
 * the first `refuseFirst` calls are refused, then every `refuseEvery`-th call after them.
 */
export interface ManagementThrottle {
  /** Refuse this many calls, then let calls through. Defaults to 0. */
  readonly refuseFirst?: number;
  /** Refuse every k-th call (k >= 2; counted after the `refuseFirst` ones). Defaults to none. */
  readonly refuseEvery?: number;
  /** The methods the rule counts and refuses (e.g. `['POST']`: a poster that fails while DeleteConnection works). Defaults to all. */
  readonly methods?: readonly ('POST' | 'GET' | 'DELETE')[];
  /**
   * Refuse the first `times` calls for one connection (counted per connection, whatever the other
   * rules did), e.g. more than the fan-out's attempts, so that one post certainly runs out of them.
   * Defaults to none.
   */
  readonly refuseConnection?: { readonly connectionId: string; readonly times: number };
}

/** One management API call, as the gateway's log keeps it while a throttle rule is set. */
export interface ManagementCall {
  readonly connectionId: string;
  readonly method: string;
  /** True when the throttle refused the call (429 `LimitExceededException`). */
  readonly refused: boolean;
  /** `performance.now()` when the call arrived. */
  readonly at: number;
  /** The `id` of the posted frame, when it is an event envelope. */
  readonly eventId?: string;
}

export interface WsGatewayOptions {
  readonly handlers: WsGatewayHandlers;
  /** Stage name, the URL's path. Defaults to 'live' (the CDK stack's default). */
  readonly stage?: string;
  /** Host to bind. Defaults to 127.0.0.1. */
  readonly host?: string;
  /** Port. Defaults to 0 (a free port). */
  readonly port?: number;
  /** Milliseconds without a client frame before the socket is closed. Defaults to 600000 (10 min). */
  readonly idleTimeoutMs?: number;
  /** Milliseconds after which every socket is closed. Defaults to 7200000 (2 h). */
  readonly maxConnectionMs?: number;
  /** Largest client frame in bytes; larger ones close the socket with 1009. Defaults to 32768. */
  readonly maxFrameBytes?: number;
  /** Largest PostToConnection payload in bytes. Defaults to 131072. */
  readonly maxPostBytes?: number;
  /** Management API throttling: which calls get 429 `LimitExceededException`. Defaults to none. */
  readonly managementThrottle?: ManagementThrottle;
  /**
   * Which browsers may connect (Origin list, loopback Host). Defaults to a guard listing only this
   * gateway's own origins; the local stack passes its shared one.
   */
  readonly guard?: LocalGuard;
  /** Called with errors of handlers (besides the frame the client gets). Defaults to none. */
  readonly onHandlerError?: (routeKey: string, err: unknown) => void;
}

interface Connection {
  readonly id: string;
  readonly ws: WebSocket;
  readonly connectedAt: number;
  readonly sourceIp: string;
  readonly userAgent: string;
  readonly authorizer: WsRequestContext['authorizer'];
  readonly headers: Record<string, string>;
  lastActiveAt: number;
  idle?: NodeJS.Timeout;
  hard?: NodeJS.Timeout;
}

const API_ID = 'localws';

/** An API Gateway style connection id: 16 base64 characters, like `L0SM9cOFvHcCIhw=`. */
function newConnectionId(): string {
  return randomBytes(10).toString('base64');
}

function headerMaps(req: IncomingMessage): { headers: Record<string, string>; multiValueHeaders: Record<string, string[]> } {
  const headers: Record<string, string> = {};
  const multiValueHeaders: Record<string, string[]> = {};
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const k = req.rawHeaders[i];
    const v = req.rawHeaders[i + 1];
    headers[k] = headers[k] === undefined ? v : `${headers[k]},${v}`;
    (multiValueHeaders[k] ??= []).push(v);
  }
  return { headers, multiValueHeaders };
}

function queryMaps(url: URL): { query?: Record<string, string>; multi?: Record<string, string[]> } {
  if ([...url.searchParams.keys()].length === 0) return {};
  const query: Record<string, string> = {};
  const multi: Record<string, string[]> = {};
  for (const [k, v] of url.searchParams) {
    query[k] = v;
    (multi[k] ??= []).push(v);
  }
  return { query, multi };
}

function rejectUpgrade(socket: Duplex, status: number, body: string): void {
  const reason = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 500: 'Internal Server Error', 503: 'Service Unavailable' }[status] ?? 'Error';
  if (socket.writable) {
    socket.end(`HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  }
  socket.destroy();
}

export class WsGateway {
  readonly stage: string;
  private readonly server: Server;
  private readonly wss: WebSocketServer;
  private readonly connections = new Map<string, Connection>();
  private readonly pendingDisconnects = new Set<Promise<unknown>>();
  private readonly o: Required<Omit<WsGatewayOptions, 'managementThrottle' | 'onHandlerError' | 'handlers' | 'guard'>>;
  private readonly guard: LocalGuard;
  private throttle?: ManagementThrottle;
  private throttleCalls = 0;
  private throttled = 0;
  private connectionCalls = 0;
  private calls: ManagementCall[] = [];
  private readonly holds: { match: (frame: string, connectionId: string) => boolean; arrived: () => void; gate: Promise<void> }[] = [];
  private port = 0;
  private closing = false;
  private closePhase = 'open';

  constructor(private readonly options: WsGatewayOptions) {
    this.stage = options.stage ?? 'live';
    this.o = {
      stage: this.stage,
      host: options.host ?? '127.0.0.1',
      port: options.port ?? 0,
      idleTimeoutMs: options.idleTimeoutMs ?? 600_000,
      maxConnectionMs: options.maxConnectionMs ?? 7_200_000,
      maxFrameBytes: options.maxFrameBytes ?? 32 * 1024,
      maxPostBytes: options.maxPostBytes ?? 128 * 1024,
    };
    this.setManagementThrottle(options.managementThrottle);
    this.guard = options.guard ?? new LocalGuard({ hosts: [this.o.host] });
    this.wss = new WebSocketServer({ noServer: true, maxPayload: this.o.maxFrameBytes, perMessageDeflate: false });
    this.server = createServer((req, res) => {
      const refusal = this.guard.check(req);
      if (refusal) return refuse(res, refusal);
      this.management(req, res).catch(() => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
        res.end('{"message":"Internal server error"}');
      });
    });
    this.server.keepAliveTimeout = 65_000;
    this.server.on('upgrade', (req, socket, head) => {
      socket.on('error', () => undefined);
      this.upgrade(req, socket, head).catch(() => rejectUpgrade(socket, 500, '{"message":"Internal server error"}'));
    });
  }

  /** Starts listening; resolves with the port. */
  async listen(): Promise<number> {
    this.port = await listen(this.server, this.o.port, this.o.host);
    this.guard.addOwnPort(this.port);
    return this.port;
  }

  /** `ws://host:port/{stage}`: what clients connect to (the stack's WebSocketUrl). */
  get url(): string {
    return `ws://${this.o.host}:${this.port}/${this.stage}`;
  }

  /** `http://host:port/{stage}`: the management API endpoint (the stage's callback URL). */
  get managementEndpoint(): string {
    return `http://${this.o.host}:${this.port}/${this.stage}`;
  }

  /** Open connections. */
  get connectionCount(): number {
    return this.connections.size;
  }

  /** Ids of the open connections. */
  connectionIds(): string[] {
    return [...this.connections.keys()];
  }

  /**
   * Changes (or with undefined, removes) the management API's throttling at run time; the call
   * count and `managementThrottled` restart from zero.
   */
  setManagementThrottle(throttle: ManagementThrottle | undefined): void {
    const first = throttle?.refuseFirst ?? 0;
    const every = throttle?.refuseEvery;
    if (!Number.isInteger(first) || first < 0) throw new Error(`managementThrottle.refuseFirst must be a whole number >= 0, got ${first}.`);
    if (every !== undefined && (!Number.isInteger(every) || every < 2)) throw new Error(`managementThrottle.refuseEvery must be a whole number >= 2 (1 would refuse every call), got ${every}.`);
    const times = throttle?.refuseConnection?.times ?? 0;
    if (!Number.isInteger(times) || times < 0) throw new Error(`managementThrottle.refuseConnection.times must be a whole number >= 0, got ${times}.`);
    this.throttle = throttle;
    this.throttleCalls = 0;
    this.throttled = 0;
    this.connectionCalls = 0;
    this.calls = [];
  }

  /** Management API calls refused with 429 since the throttle was last set. */
  get managementThrottled(): number {
    return this.throttled;
  }

  /** The management API calls since a throttle rule was last set, in arrival order (none are kept without a rule). */
  get managementCalls(): readonly ManagementCall[] {
    return this.calls;
  }

  /**
   * Holds every PostToConnection whose frame `match`es until `release()` (tests only): such a post is not answered
   * and its frame not sent meanwhile, as a slow producer's post (its retries too), so two producers' posts cross
   * exactly, without timing. `held` resolves once a post is held. A post released after its connection closed answers 410.
   */
  holdPost(match: (frame: string, connectionId: string) => boolean): { held: Promise<void>; release(): void } {
    let arrived!: () => void;
    let open!: () => void;
    const held = new Promise<void>((r) => (arrived = r));
    const h = { match, arrived, gate: new Promise<void>((r) => (open = r)) };
    this.holds.push(h);
    const release = () => {
      const i = this.holds.indexOf(h);
      if (i >= 0) this.holds.splice(i, 1);
      open();
    };
    return { held, release };
  }

  /**
   * Drops a connection's TCP socket without a close frame and without running `$disconnect`, the
   * way a lost client looks when API Gateway never delivers the event: only a 410 reveals it.
   */
  kill(connectionId: string): void {
    const c = this.connections.get(connectionId);
    if (!c) throw new Error(`kill: no open connection ${connectionId}`);
    this.forget(c);
    c.ws.removeAllListeners('close');
    c.ws.on('close', () => undefined);
    c.ws.terminate();
  }

  /** Closes every socket (running `$disconnect` for each) and stops listening. */
  async close(): Promise<void> {
    this.closing = true;
    this.closePhase = 'closing sockets';
    for (const c of this.connections.values()) c.ws.close(1001, 'Going away');
    const deadline = Date.now() + 2000;
    while (this.connections.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const c of this.connections.values()) c.ws.terminate();
    this.closePhase = 'waiting for $disconnect';
    await Promise.allSettled([...this.pendingDisconnects]);
    this.wss.close();
    this.closePhase = 'closing the server';
    await shutdown(this.server);
    this.closePhase = 'closed';
  }

  /** Where `close()` is and what the gateway still holds: for a test that names a close that does not finish. */
  diagnostics(): { closePhase: string; connections: number; pendingDisconnects: number; listening: boolean } {
    return { closePhase: this.closePhase, connections: this.connections.size, pendingDisconnects: this.pendingDisconnects.size, listening: this.server.listening };
  }

  private context(routeKey: string, eventType: WsRequestContext['eventType'], connectionId: string, connectedAt: number, sourceIp: string, userAgent: string): WsRequestContext {
    const now = new Date();
    return {
      routeKey,
      eventType,
      extendedRequestId: randomBytes(8).toString('base64url'),
      requestTime: now.toUTCString(),
      messageDirection: 'IN',
      stage: this.stage,
      connectedAt,
      requestTimeEpoch: now.getTime(),
      identity: { sourceIp, userAgent },
      requestId: randomUUID(),
      domainName: `${this.o.host}:${this.port}`,
      connectionId,
      apiId: API_ID,
    };
  }

  private async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    if (this.closing) return rejectUpgrade(socket, 503, '{"message":"Service Unavailable"}');
    const refusal = this.guard.check(req);
    if (refusal) return rejectUpgrade(socket, refusal.status, errorBody(refusal));
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== `/${this.stage}` && url.pathname !== `/${this.stage}/`) return rejectUpgrade(socket, 404, '{"message":"Not Found"}');
    const ticket = url.searchParams.get('ticket');
    // The identity source is missing: API Gateway answers 401 without invoking the authorizer.
    if (!ticket) return rejectUpgrade(socket, 401, '{"message":"Unauthorized"}');

    const { headers, multiValueHeaders } = headerMaps(req);
    const { query, multi } = queryMaps(url);
    const connectionId = newConnectionId();
    const connectedAt = Date.now();
    const sourceIp = req.socket.remoteAddress ?? '127.0.0.1';
    const userAgent = req.headers['user-agent'] ?? '';
    const baseContext = this.context('$connect', 'CONNECT', connectionId, connectedAt, sourceIp, userAgent);
    const methodArn = `arn:aws:execute-api:local:000000000000:${API_ID}/${this.stage}/$connect`;

    const started = Date.now();
    let auth: WsAuthorizerResult;
    try {
      auth = await this.options.handlers.authorizer({
        type: 'REQUEST',
        methodArn,
        headers,
        multiValueHeaders,
        queryStringParameters: query,
        multiValueQueryStringParameters: multi,
        stageVariables: {},
        requestContext: baseContext,
      });
    } catch (err) {
      this.options.onHandlerError?.('authorizer', err);
      const unauthorized = err instanceof Error && err.message === 'Unauthorized';
      return rejectUpgrade(socket, unauthorized ? 401 : 500, unauthorized ? '{"message":"Unauthorized"}' : '{"message":"Internal server error"}');
    }
    const statements = auth?.policyDocument?.Statement ?? [];
    const allowed = statements.some((s) => s.Effect === 'Allow' && (s.Resource === methodArn || s.Resource === '*' || methodArn.startsWith(s.Resource.replace(/\*$/, ''))));
    const denied = statements.some((s) => s.Effect === 'Deny');
    if (!allowed || denied) return rejectUpgrade(socket, 403, '{"message":"Forbidden"}');
    const authorizer = { ...(auth.context ?? {}), principalId: auth.principalId, integrationLatency: Date.now() - started } as WsRequestContext['authorizer'];

    let result: WsResult | undefined | void;
    try {
      result = await this.options.handlers.connect({
        headers,
        multiValueHeaders,
        queryStringParameters: query,
        multiValueQueryStringParameters: multi,
        requestContext: { ...baseContext, authorizer },
        isBase64Encoded: false,
      });
    } catch (err) {
      this.options.onHandlerError?.('$connect', err);
      return rejectUpgrade(socket, 500, '{"message":"Internal server error"}');
    }
    const status = result?.statusCode ?? 200;
    if (status < 200 || status > 299) {
      return rejectUpgrade(socket, status, result?.body ?? '{"message":"Forbidden"}');
    }
    // The client left during $connect: $connect answered 200, so the connection existed and API Gateway still reports
    // its disconnect.
    const left = () => this.track(this.callDisconnect(connectionId, connectedAt, sourceIp, userAgent, authorizer, headers, 1006, 'Client left during connect'));
    if (socket.destroyed || this.closing) return left();
    let accepted = false;
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      accepted = true;
      this.accept(ws, { id: connectionId, connectedAt, sourceIp, userAgent, authorizer, headers });
    });
    // ws calls back synchronously (no verifyClient) or not at all: it drops a socket it cannot use (a half-closed one,
    // its FIN read, as from a client that gave up on a slow open) or answers a bad handshake itself, without a
    // connection. That connection's $disconnect is still due.
    if (!accepted) left();
  }

  private accept(ws: WebSocket, c: Omit<Connection, 'ws' | 'lastActiveAt'>): void {
    const conn: Connection = { ...c, ws, lastActiveAt: Date.now() };
    this.connections.set(conn.id, conn);
    const armIdle = () => {
      if (conn.idle) clearTimeout(conn.idle);
      conn.idle = setTimeout(() => ws.close(1001, 'Going away'), this.o.idleTimeoutMs);
      conn.idle.unref();
    };
    armIdle();
    conn.hard = setTimeout(() => ws.close(1001, 'Going away'), this.o.maxConnectionMs);
    conn.hard.unref();
    // ws closes the socket with 1009 by itself when a frame exceeds maxPayload, after this error.
    ws.on('error', () => undefined);
    ws.on('message', (data: RawData, isBinary: boolean) => {
      conn.lastActiveAt = Date.now();
      armIdle();
      const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
      this.message(conn, buf, isBinary);
    });
    ws.on('close', (code: number, reason: Buffer) => {
      this.forget(conn);
      this.track(this.callDisconnect(conn.id, conn.connectedAt, conn.sourceIp, conn.userAgent, conn.authorizer, conn.headers, code, reason.toString() || closeReason(code)));
    });
  }

  private forget(conn: Connection): void {
    if (conn.idle) clearTimeout(conn.idle);
    if (conn.hard) clearTimeout(conn.hard);
    if (this.connections.get(conn.id) === conn) this.connections.delete(conn.id);
  }

  private track(p: Promise<unknown>): void {
    this.pendingDisconnects.add(p);
    void p.finally(() => this.pendingDisconnects.delete(p));
  }

  private async callDisconnect(
    connectionId: string,
    connectedAt: number,
    sourceIp: string,
    userAgent: string,
    authorizer: WsRequestContext['authorizer'],
    headers: Record<string, string>,
    code: number,
    reason: string,
  ): Promise<void> {
    const ctx = this.context('$disconnect', 'DISCONNECT', connectionId, connectedAt, sourceIp, userAgent);
    try {
      await this.options.handlers.disconnect({
        headers,
        multiValueHeaders: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, [v]])),
        requestContext: { ...ctx, authorizer, disconnectStatusCode: code, disconnectReason: reason },
        isBase64Encoded: false,
      });
    } catch (err) {
      this.options.onHandlerError?.('$disconnect', err);
    }
  }

  private message(conn: Connection, buf: Buffer, isBinary: boolean): void {
    const text = buf.toString('utf8');
    let routeKey = '$default';
    try {
      const parsed = JSON.parse(text) as unknown;
      const action = parsed !== null && typeof parsed === 'object' ? (parsed as { action?: unknown }).action : undefined;
      if (typeof action === 'string' && this.options.handlers.routes && Object.prototype.hasOwnProperty.call(this.options.handlers.routes, action)) routeKey = action;
    } catch {
      // not JSON: $default
    }
    const handler = routeKey === '$default' ? this.options.handlers.default : this.options.handlers.routes![routeKey];
    const ctx = this.context(routeKey, 'MESSAGE', conn.id, conn.connectedAt, conn.sourceIp, conn.userAgent);
    const event: WsEvent = {
      requestContext: { ...ctx, messageId: randomBytes(8).toString('base64url'), authorizer: conn.authorizer },
      body: isBinary ? buf.toString('base64') : text,
      isBase64Encoded: isBinary,
    };
    // Each frame is its own invocation: frames of one connection may run concurrently, as on AWS.
    handler(event).catch((err: unknown) => {
      this.options.onHandlerError?.(routeKey, err);
      if (conn.ws.readyState === WebSocket.OPEN) {
        conn.ws.send(JSON.stringify({ message: 'Internal server error', connectionId: conn.id, requestId: ctx.requestId }));
      }
    });
  }

  /** Counts a management call (and logs it); false when the throttle rule refuses it. */
  private admit(connectionId: string, method: string, body: Buffer[]): boolean {
    const t = this.throttle;
    if (!t) return true;
    if (t.methods && !t.methods.includes(method as 'POST')) return true;
    const n = ++this.throttleCalls;
    const first = t.refuseFirst ?? 0;
    let refuse = n <= first || (t.refuseEvery !== undefined && (n - first) % t.refuseEvery === 0);
    if (t.refuseConnection?.connectionId === connectionId && ++this.connectionCalls <= t.refuseConnection.times) refuse = true;
    if (refuse) this.throttled++;
    this.calls.push({ connectionId, method, refused: refuse, at: performance.now(), eventId: eventIdOf(method, body) });
    return !refuse;
  }

  /** The management API: `/{stage}/@connections/{connectionId}`. */
  private async management(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const prefix = `/${this.stage}/@connections/`;
    const reply = (status: number, type: string | undefined, body?: string) => {
      const headers: Record<string, string> = { 'x-amzn-requestid': randomUUID() };
      if (type) headers['x-amzn-errortype'] = type;
      if (body !== undefined) headers['content-type'] = 'application/json';
      res.writeHead(status, headers);
      res.end(body ?? '');
    };
    if (!url.pathname.startsWith(prefix)) return reply(404, 'NotFoundException', '{"message":"Not Found"}');
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of req) {
      size += (c as Buffer).length;
      if (size <= this.o.maxPostBytes) chunks.push(c as Buffer);
    }
    if (!/^AWS4-HMAC-SHA256 /.test(req.headers.authorization ?? '')) return reply(403, 'ForbiddenException', '{"message":"Missing Authentication Token"}');
    let connectionId: string | undefined;
    try {
      connectionId = decodeURIComponent(url.pathname.slice(prefix.length));
    } catch {
      connectionId = undefined;
    }
    if (!this.admit(connectionId ?? '', req.method ?? '', chunks)) return reply(429, 'LimitExceededException', '{"message":"Rate exceeded"}');
    if (connectionId === undefined) return reply(400, 'BadRequestException', '{"message":"Invalid connectionId"}');
    const conn = this.connections.get(connectionId);
    if (!conn || conn.ws.readyState !== WebSocket.OPEN) return reply(410, 'GoneException', '{"message":"GoneException"}');
    switch (req.method) {
      case 'POST': {
        if (size > this.o.maxPostBytes) return reply(413, 'PayloadTooLargeException', `{"message":"Message too long. Max size is ${this.o.maxPostBytes} bytes"}`);
        const frame = Buffer.concat(chunks);
        const id = connectionId;
        const h = this.holds.find((x) => x.match(frame.toString('utf8'), id));
        if (h) {
          h.arrived();
          await h.gate;
          if (conn.ws.readyState !== WebSocket.OPEN) return reply(410, 'GoneException', '{"message":"GoneException"}');
        }
        conn.ws.send(frame, { binary: false });
        return reply(200, undefined);
      }
      case 'GET':
        return reply(
          200,
          undefined,
          JSON.stringify({
            connectedAt: new Date(conn.connectedAt).toISOString(),
            identity: { sourceIp: conn.sourceIp, userAgent: conn.userAgent },
            lastActiveAt: new Date(conn.lastActiveAt).toISOString(),
          }),
        );
      case 'DELETE':
        conn.ws.close(1000, '');
        return reply(204, undefined);
      default:
        return reply(405, 'MethodNotAllowedException', '{"message":"Method Not Allowed"}');
    }
  }
}

/** The `id` of a posted frame that is an event envelope (for the call log). */
function eventIdOf(method: string, body: Buffer[]): string | undefined {
  if (method !== 'POST') return undefined;
  try {
    const f = JSON.parse(Buffer.concat(body).toString('utf8')) as { id?: unknown };
    return typeof f.id === 'string' ? f.id : undefined;
  } catch {
    return undefined;
  }
}

function closeReason(code: number): string {
  if (code === 1009) return 'Message too big';
  if (code === 1005) return 'No status code';
  if (code === 1006) return 'Abnormal closure';
  return '';
}

/** Starts a gateway; resolves once it listens. */
export async function startWsGateway(options: WsGatewayOptions): Promise<WsGateway> {
  const gw = new WsGateway(options);
  await gw.listen();
  return gw;
}
