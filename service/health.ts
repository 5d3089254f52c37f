import type { IncomingMessage, ServerResponse } from 'node:http';

/** What `/healthz` reports. */
export interface HealthState {
  /** Both Redis connections (commands and the subscriber) are ready. */
  redisUp(): boolean;
  /** Redis answers a PING now (the deep check). */
  ping(): Promise<boolean>;
  draining(): boolean;
  /** Open streams. */
  connections(): number;
  /** Long polls waiting for their answer. */
  polls(): number;
  /** Milliseconds since the epoch (injected: tests move it). */
  now(): number;
}

/** How long one deep check's Redis PING answers for every `?deep=1` request, in milliseconds. */
export const DEEP_CHECK_MS = 1000;

/**
 * `/healthz` is liveness: 200 while the process serves, whatever Redis does (an ALB health check
 * that failed on a shared dependency would replace every task at once during a Redis outage).
 * `/healthz?deep=1` is readiness: 503 while Redis is down or the task is draining.
 *
 * Who asks decides how much it is told. The ALB's health checks go to the task directly, without
 * `X-Forwarded-For`; every request through the ALB carries one (the ALB appends the client's
 * address, its default `routing.http.xff_header_processing.mode`). Those get `{"status"}` only; the
 * health check, and operators inside the VPC, also get `redis`, `draining` and the open connections.
 * A deep check PINGs Redis at most once per {@link DEEP_CHECK_MS} per task: requests in between (and
 * concurrent ones) share that PING's answer, so `?deep=1` in a loop costs Redis nothing more.
 */
export class Health {
  private last?: { at: number; answer: Promise<boolean> };

  constructor(private readonly state: HealthState) {}

  private ping(): Promise<boolean> {
    const now = this.state.now();
    if (!this.last || now - this.last.at >= DEEP_CHECK_MS) this.last = { at: now, answer: this.state.ping() };
    return this.last.answer;
  }

  async answer(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const state = this.state;
    let up = state.redisUp();
    const deep = url.searchParams.has('deep') && url.searchParams.get('deep') !== '0';
    if (deep && up) up = await this.ping();
    const draining = state.draining();
    const outsider = req.headers['x-forwarded-for'] !== undefined;
    const body = outsider ? { status: 'ok' } : { status: 'ok', redis: up ? 'up' : 'down', draining, connections: state.connections(), polls: state.polls() };
    const ready = up && !draining;
    if (deep && !ready) {
      res.writeHead(503, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      const msg = draining ? 'Draining: this task is stopping.' : 'Redis is unreachable.';
      res.end(JSON.stringify(outsider ? { status: 'unavailable' } : { ...body, status: 'unavailable', error: { code: 'unavailable', message: msg } }));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(body));
  }
}
