import type { IncomingMessage, ServerResponse } from 'node:http';
import { RealtimeError } from '../core/errors';

/**
 * Cross-origin reads (CORS with credentials): browsers send Origin on cross-origin requests; only
 * the origins in ALLOWED_ORIGINS (or any, with `*`) may read streams and polls.
 */
export class Cors {
  constructor(private readonly allowedOrigins: readonly string[]) {}

  allowed(origin: string): boolean {
    const list = this.allowedOrigins;
    return list.includes('*') || list.includes(origin);
  }

  /** Throws `origin_not_allowed` for a request from an origin not listed. */
  check(req: IncomingMessage): void {
    const origin = req.headers.origin;
    if (origin && !this.allowed(origin)) throw new RealtimeError('origin_not_allowed', `Origin ${origin} is not in ALLOWED_ORIGINS.`);
  }

  /** The CORS headers of an answer to `req` (none for same-origin requests and origins not listed). */
  headers(req: IncomingMessage): Record<string, string> {
    const origin = req.headers.origin;
    if (!origin || !this.allowed(origin)) return {};
    return { 'access-control-allow-origin': origin, 'access-control-allow-credentials': 'true', vary: 'Origin' };
  }

  /** Answers an OPTIONS preflight. */
  preflight(req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(204, {
      ...this.headers(req),
      'access-control-allow-methods': 'GET, OPTIONS',
      'access-control-allow-headers': 'Last-Event-ID, Cache-Control',
      'access-control-max-age': '600',
    });
    res.end();
  }
}
