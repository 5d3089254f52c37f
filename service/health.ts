import type { ServerResponse } from 'node:http';

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
}

/**
 * `/healthz` is liveness: 200 while the process serves, whatever Redis does (an ALB health check
 * that failed on a shared dependency would replace every task at once during a Redis outage).
 * The body reports `redis` (`up`/`down`), `draining` and the open connections.
 * `/healthz?deep=1` is readiness: 503 while Redis is down or the task is draining.
 */
export async function healthz(res: ServerResponse, url: URL, state: HealthState): Promise<void> {
  let up = state.redisUp();
  const deep = url.searchParams.has('deep') && url.searchParams.get('deep') !== '0';
  if (deep && up) up = await state.ping();
  const draining = state.draining();
  const body = { status: 'ok', redis: up ? 'up' : 'down', draining, connections: state.connections(), polls: state.polls() };
  const ready = up && !draining;
  if (deep && !ready) {
    res.writeHead(503, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    const msg = draining ? 'Draining: this task is stopping.' : 'Redis is unreachable.';
    res.end(JSON.stringify({ ...body, status: 'unavailable', error: { code: 'unavailable', message: msg } }));
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}
