/**
 * The app's backend: its own HTTP API for the page, and the realtime stack behind it through
 * `@realtime-blueprint/server` (SigV4 with the AWS SDK's credential chain; its role is in the stage's
 * trustedPrincipals).
 *
 *   GET /, GET /app.js                                   the page (after `npm run build`)
 *   POST /api/ticket {"channels":[...],"transport"?}   the page's ticket function: the app signs its user in
 *                                                       its own way (here a demo header), the backend mints
 *   POST /api/goal {"team","minute"}                    publishes a goal on scores:final (backends only)
 *
 * Configuration (the stack outputs): PUBLISH_URL, TICKET_URL (…/backend/tickets when the ticket API uses JWT),
 * AWS_REGION; PORT (0: any, printed as `listening <url>`).
 */
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createServerClient, RealtimeServerError } from '@realtime-blueprint/server';
import { MATCH, ROOM, type Schema } from './schema.js';

const env = (name: string): string => {
  const v = process.env[name];
  if (!v) throw new Error(`set ${name} (a stack output)`);
  return v;
};

const realtime = createServerClient<Schema>({
  publishUrl: env('PUBLISH_URL'),
  ticketUrl: env('TICKET_URL'),
  onRetry: (r) => console.warn(`realtime: ${r.error.code}, retry ${r.attempt} in ${r.delayMs} ms (key ${r.idempotencyKey ?? '-'})`),
});

async function json(req: IncomingMessage): Promise<Record<string, unknown>> {
  let body = '';
  for await (const chunk of req) body += chunk;
  return body ? (JSON.parse(body) as Record<string, unknown>) : {};
}

const server = createServer((req, res) => {
  const send = (status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  if (req.method === 'GET' && (req.url === '/' || req.url?.startsWith('/?'))) {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    return res.end('<!doctype html><title>chat</title><div id="app"></div><script type="module" src="/app.js"></script>');
  }
  if (req.method === 'GET' && req.url === '/app.js') {
    res.writeHead(200, { 'content-type': 'text/javascript' });
    return res.end(readFileSync(new URL('./public/app.js', import.meta.url)));
  }
  (async () => {
    // Stand-in for the app's own sign-in: a real app takes the user from its session.
    const user = req.headers['x-demo-user'];
    if (typeof user !== 'string' || !/^[a-z0-9-]{1,32}$/.test(user)) return send(401, { error: { code: 'unauthorized', message: 'sign in (x-demo-user)' } });
    if (req.method === 'POST' && req.url === '/api/ticket') {
      const body = await json(req);
      const channels = Array.isArray(body.channels) ? body.channels.filter((c): c is typeof ROOM | typeof MATCH => c === ROOM || c === MATCH) : [];
      const transport = body.transport === 'ws' ? 'ws' : 'sse';
      return send(201, await realtime.ticket({ sub: user, channels, transport }));
    }
    if (req.method === 'POST' && req.url === '/api/goal') {
      const body = await json(req);
      const team = body.team === 'away' ? 'away' : 'home';
      const published = await realtime.publish(MATCH, 'goal', { team, minute: Number(body.minute) || 0 });
      await realtime.publish(ROOM, 'message', { from: 'backend', text: `Goal for ${team}!` });
      return send(202, published);
    }
    send(404, { error: { code: 'not_found', message: `${req.method} ${req.url}` } });
  })().catch((err: unknown) => {
    // The SDK's one error class: the stack's code and status, or network/timeout/credentials (status 0).
    if (err instanceof RealtimeServerError) return send(err.status || 502, { error: { code: err.code, message: err.message } });
    send(500, { error: { code: 'internal', message: 'internal error' } });
  });
});

server.listen(Number(process.env.PORT ?? 8080), '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  console.log(`listening http://127.0.0.1:${port}`);
});
