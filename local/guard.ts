import type { IncomingMessage, RequestListener, Server, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { errorBody, RealtimeError } from '../core/errors';

/** The host names the local stack answers to (the Host header's name, without the port). */
export const LOOPBACK_HOSTNAMES: readonly string[] = ['127.0.0.1', 'localhost', '[::1]'];

/**
 * Normalises one origin (`http://localhost:5173`: scheme, host, optional port; no path, query,
 * credentials or wildcard) and throws an error that says what to pass instead.
 */
export function parseOrigin(value: string): string {
  const hint = `pass an origin like http://localhost:5173 (scheme, host and port of the page, nothing else)`;
  if (value.trim() === '*') throw new Error(`Allowed origin "*" is refused: any web page open in a browser on this machine could then mint tickets and publish; ${hint}.`);
  let url: URL;
  try {
    url = new URL(value.trim());
  } catch {
    throw new Error(`Allowed origin "${value}" is not a URL; ${hint}.`);
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.username || url.password || url.pathname !== '/' || url.search || url.hash) {
    throw new Error(`Allowed origin "${value}" is not an origin; ${hint}.`);
  }
  return url.origin;
}

/** The host name of a Host header value (`127.0.0.1:3000` → `127.0.0.1`, `[::1]:3000` → `[::1]`), lower case. */
function hostName(host: string): string {
  const h = host.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(0, h.indexOf(']') + 1);
  const colon = h.indexOf(':');
  return colon < 0 ? h : h.slice(0, colon);
}

export interface LocalGuardOptions {
  /** Origins of pages (besides the stack's own) that may call the local stack with credentials. Defaults to none. */
  readonly allowedOrigins?: readonly string[];
  /** Host names answered besides 127.0.0.1, localhost and [::1] (a non-loopback bind address). Defaults to none. */
  readonly hosts?: readonly string[];
}

/**
 * What the local stack lets browsers do. The local stack trusts `x-local-user` and signs nothing, so:
 *
 * - a request whose `Origin` is not listed (the stack's own origins plus those configured) is
 *   refused with 403 `origin_not_allowed` and no CORS headers, preflights included: a page on
 *   another site cannot mint tickets, publish or read streams;
 * - a request whose `Host` is not a loopback name is refused with 403 `forbidden`: a page on
 *   evil.example whose DNS name is rebound to 127.0.0.1 is same-origin to itself and sends no
 *   foreign `Origin` on a GET, but its Host header still says evil.example;
 * - requests without `Origin` (curl, SDKs, servers; browsers always send it cross-origin) pass.
 *
 * The list is live: the stack adds its own origins as each server gets its port.
 */
export class LocalGuard {
  private readonly origins = new Set<string>();
  private readonly hosts: Set<string>;

  constructor(options: LocalGuardOptions = {}) {
    for (const o of options.allowedOrigins ?? []) this.origins.add(parseOrigin(o));
    // A bind address like `::1` is `[::1]` in a Host header.
    const named = (options.hosts ?? []).map((h) => (h.includes(':') && !h.startsWith('[') ? `[${h}]` : hostName(h)));
    this.hosts = new Set([...LOOPBACK_HOSTNAMES, ...named.filter(Boolean)]);
  }

  /** Adds the origins of a server of the stack: `http://{127.0.0.1,localhost,[::1]}:port`. */
  addOwnPort(port: number): void {
    for (const h of LOOPBACK_HOSTNAMES) this.origins.add(`http://${h}:${port}`);
  }

  /** The origins allowed now, in the order they were added. */
  get allowedOrigins(): string[] {
    return [...this.origins];
  }

  originAllowed(origin: string): boolean {
    return this.origins.has(origin);
  }

  /** Why `req` is refused, or undefined when it may proceed. */
  check(req: IncomingMessage): RealtimeError | undefined {
    const host = req.headers.host;
    if (host !== undefined && !this.hosts.has(hostName(host))) {
      return new RealtimeError('forbidden', `Host "${host}" is not served: the local stack answers only 127.0.0.1, localhost and [::1] (a guard against DNS rebinding).`);
    }
    const origin = req.headers.origin;
    if (origin !== undefined && !this.origins.has(origin)) {
      return new RealtimeError('origin_not_allowed', `Origin ${origin} may not call the local stack: allow it with --allow-origin ${origin} (allowedOrigins of startLocalStack).`);
    }
    return undefined;
  }

  /** CORS headers granting the request's Origin with credentials, or none (no Origin, or not allowed). */
  cors(req: IncomingMessage): Record<string, string> {
    const origin = req.headers.origin;
    return origin && this.origins.has(origin) ? { 'access-control-allow-origin': origin, 'access-control-allow-credentials': 'true', vary: 'Origin' } : {};
  }
}

/** Answers a refusal: 403 JSON, no CORS headers. */
export function refuse(res: ServerResponse, err: RealtimeError): void {
  res.writeHead(err.status, { 'content-type': 'application/json', 'cache-control': 'no-store', connection: 'close' });
  res.end(errorBody(err));
}

/**
 * Puts `guard` in front of the request handlers a server already has (the SSE service's): refused
 * requests are answered here and never reach them. Call it before the server listens.
 */
export function guardServer(server: Server, guard: LocalGuard): void {
  const handlers = server.listeners('request') as RequestListener[];
  server.removeAllListeners('request');
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const refusal = guard.check(req);
    if (refusal) return refuse(res, refusal);
    for (const h of handlers) h.call(server, req, res);
  });
  // WebSocket upgrades (the service's `/live`) pass the same guard.
  const upgrades = server.listeners('upgrade') as ((req: IncomingMessage, socket: Duplex, head: Buffer) => void)[];
  server.removeAllListeners('upgrade');
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const refusal = guard.check(req);
    if (refusal) {
      const body = errorBody(refusal);
      socket.on('error', () => undefined);
      socket.end(`HTTP/1.1 ${refusal.status} Forbidden\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      return;
    }
    for (const h of upgrades) h.call(server, req, socket, head);
  });
}
