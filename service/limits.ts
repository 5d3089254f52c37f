import type { IncomingMessage } from 'node:http';

/**
 * Requests per key (a client IP) in fixed windows of `windowMs`, all keys sharing the window
 * boundaries, so the whole table is dropped when a window ends. The clock is injected (tests move
 * it; a wall clock inside a test would flake on a loaded machine). Memory is bounded: once
 * `maxKeys` keys are counted in a window, further new keys share one overflow budget.
 */
export class FixedWindowLimiter {
  private counts = new Map<string, number>();
  private windowStart = -Infinity;

  constructor(
    /** Requests allowed per key and window. */
    readonly limit: number,
    /** Window length in milliseconds. */
    readonly windowMs: number,
    /** Milliseconds since the epoch. */
    private readonly now: () => number,
    /** Keys counted per window before new ones share the overflow budget. Defaults to 100000. */
    readonly maxKeys = 100_000,
  ) {}

  /** Counts one request of `key`: 0 when allowed, else milliseconds until the window ends. */
  take(key: string): number {
    const now = this.now();
    if (now >= this.windowStart + this.windowMs) {
      this.windowStart = Math.floor(now / this.windowMs) * this.windowMs;
      this.counts = new Map();
    }
    const k = this.counts.has(key) || this.counts.size < this.maxKeys ? key : '\0overflow';
    const n = (this.counts.get(k) ?? 0) + 1;
    this.counts.set(k, n);
    return n <= this.limit ? 0 : Math.max(1, this.windowStart + this.windowMs - now);
  }
}

/**
 * The client's address: the socket's peer with `trustedHops` 0; behind `trustedHops` proxies that
 * append to X-Forwarded-For (the ALB is one), the entry the outermost trusted proxy appended, i.e.
 * the `trustedHops`-th from the right. Entries to the left of it are the client's to forge and are
 * ignored. With fewer entries than hops, the left-most one.
 */
export function clientIp(req: IncomingMessage, trustedHops: number): string {
  const peer = req.socket.remoteAddress ?? 'unknown';
  if (trustedHops <= 0) return peer;
  const header = req.headers['x-forwarded-for'];
  const raw = Array.isArray(header) ? header.join(',') : (header ?? '');
  const hops = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (hops.length === 0) return peer;
  return hops[Math.max(0, hops.length - trustedHops)];
}
