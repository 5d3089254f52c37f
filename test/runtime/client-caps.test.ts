/**
 * Issue 20, item 3: what one client may hold on a task. Anonymous requests (public channels only) are
 * capped per client IP in concurrent streams and polls (ANON_CONNECTIONS_PER_IP) and in distinct
 * channels (ANON_CHANNELS_PER_IP); a ticket holder in concurrent streams, polls and `/live` sockets
 * (USER_CONNECTIONS) and in tickets per minute (USER_TICKETS_PER_MINUTE). A native EventSource is
 * answered `200` + `retry:`, JSON paths `429` + `Retry-After`. The counts are exact: no clock involved.
 */
import type Redis from 'ioredis';
import pino from 'pino';
import { Keys } from '../../core/redis/keys';
import { issueTicket } from '../../core/tickets';
import { connectSession, disconnectSession } from '../../core/ws-session';
import { errorResult } from '../../lambda/shared/http';
import type { RealtimeServer } from '../../service/realtime-server';
import { coreConfig, eventually, get, RawStream, startService, ticketFor, uid, useRedis } from '../support/harness';
import { connectWs, upgradeStatus } from './ws-support';

let redis: Redis;
const cleanup = useRedis((r) => (redis = r));

async function service(env: Record<string, string>): Promise<{ service: RealtimeServer; base: string }> {
  // Behind one proxy (the ALB): the client's address is the right-most X-Forwarded-For entry.
  const s = await startService({ TRUST_PROXY_HOPS: '1', POLL_TIMEOUT_MS: '60000', ...env });
  cleanup.push(() => s.service.close());
  return s;
}
function stream(url: string, ip: string, headers: Record<string, string> = {}): RawStream {
  const s = new RawStream(url, { 'x-forwarded-for': ip, ...headers });
  cleanup.push(() => s.close());
  return s;
}
const ready = (s: RawStream) => s.events().some((e) => e.event === 'ready');
const opened = async (s: RawStream) => {
  await s.until((x) => ready(x) || x.ended);
  return ready(s);
};
/** An EventSource refused for a while: 200, a retry hint and a comment naming why; nothing else. */
const toldToRetry = async (s: RawStream) => {
  await s.until((x) => x.ended);
  return s.status === 200 && /^retry: \d+\n\n: rate_limited/.test(s.text);
};
const errorOf = (r: { status: number; body: string; headers: Record<string, unknown> }) => ({
  status: r.status,
  code: (JSON.parse(r.body) as { error: { code: string } }).error.code,
  retryAfter: r.headers['retry-after'],
});

describe('anonymous requests, per client IP (ANON_CONNECTIONS_PER_IP, ANON_CHANNELS_PER_IP)', () => {
  test('concurrent streams and polls: the third of a cap of 2 is told to retry (EventSource 200 + retry:, JSON 429 + Retry-After); another IP is not affected; a closed one frees its place', async () => {
    const { service: svc, base } = await service({ ANON_CONNECTIONS_PER_IP: '2' });
    const ch = () => `scores:${uid()}`;
    const a1 = stream(`${base}/events?channels=${ch()}`, '198.51.100.1');
    const a2 = stream(`${base}/events?channels=${ch()}`, '198.51.100.1');
    expect([await opened(a1), await opened(a2)]).toEqual([true, true]);
    expect(await toldToRetry(stream(`${base}/events?channels=${ch()}`, '198.51.100.1'))).toBe(true);
    expect(errorOf(await get(`${base}/events?channels=${ch()}`, { 'x-forwarded-for': '198.51.100.1' }))).toEqual({ status: 429, code: 'rate_limited', retryAfter: '5' });
    expect(errorOf(await get(`${base}/poll?channels=${ch()}`, { 'x-forwarded-for': '198.51.100.1' }))).toEqual({ status: 429, code: 'rate_limited', retryAfter: '5' });
    // The forged left-most entry is not the client's address: the ALB's right-most one is.
    expect(await toldToRetry(stream(`${base}/events?channels=${ch()}`, '203.0.113.9, 198.51.100.1'))).toBe(true);
    expect(await opened(stream(`${base}/events?channels=${ch()}`, '198.51.100.2'))).toBe(true);
    a1.close();
    await eventually(() => svc.connections === 2, 5000, 'the closed stream released');
    expect(await opened(stream(`${base}/events?channels=${ch()}`, '198.51.100.1'))).toBe(true);
  });

  test('distinct channels: a budget of 3 takes x,y then y,z, refuses w, still takes x again; another IP takes w', async () => {
    const { base } = await service({ ANON_CHANNELS_PER_IP: '3' });
    const [x, y, z, w] = [uid(), uid(), uid(), uid()].map((n) => `scores:${n}`);
    const ip = '198.51.100.3';
    expect(await opened(stream(`${base}/events?channels=${x},${y}`, ip))).toBe(true);
    expect(await opened(stream(`${base}/events?channels=${y},${z}`, ip))).toBe(true);
    expect(await toldToRetry(stream(`${base}/events?channels=${w}`, ip))).toBe(true);
    expect(errorOf(await get(`${base}/poll?channels=${w}`, { 'x-forwarded-for': ip }))).toEqual({ status: 429, code: 'rate_limited', retryAfter: '5' });
    expect(await opened(stream(`${base}/events?channels=${x}`, ip))).toBe(true);
    expect(await opened(stream(`${base}/events?channels=${w}`, '198.51.100.4'))).toBe(true);
  });

  test('ticket holders are not counted as anonymous', async () => {
    const { base } = await service({ ANON_CONNECTIONS_PER_IP: '1' });
    const ip = '198.51.100.5';
    expect(await opened(stream(`${base}/events?channels=scores:${uid()}`, ip))).toBe(true);
    const ch = `chat:${uid()}`;
    expect(await opened(stream(`${base}/events?channels=${ch}&ticket=${await ticketFor(redis, `t-${uid()}`, [ch])}`, ip))).toBe(true);
  });
});

describe('ticket holders, per user (USER_CONNECTIONS, USER_TICKETS_PER_MINUTE)', () => {
  test('streams, polls and /live sockets together: past a cap of 2 an EventSource gets 200 + retry: with its reconnect cookie, an upgrade 429; another user is not affected', async () => {
    const { service: svc, base } = await service({ USER_CONNECTIONS: '2' });
    const sub = `capped-${uid()}`;
    const ch = `chat:${uid()}`;
    const s1 = stream(`${base}/events?channels=${ch}&ticket=${await ticketFor(redis, sub, [ch])}`, '198.51.100.6');
    expect(await opened(s1)).toBe(true);
    const live = await connectWs(`${base.replace(/^http/, 'ws')}/live?ticket=${await ticketFor(redis, sub, [ch], 'ws')}`);
    cleanup.push(() => live.close());
    const third = stream(`${base}/events?channels=${ch}&ticket=${await ticketFor(redis, sub, [ch])}`, '198.51.100.7');
    expect(await toldToRetry(third)).toBe(true);
    // The ticket was spent: the refusal hands over the cookie, so the native reconnect is still authorised.
    expect(String((third.headers['set-cookie'] as string[] | undefined)?.[0] ?? '')).toMatch(/^rt_/);
    const poll = await get(`${base}/poll?channels=${ch}&ticket=${await ticketFor(redis, sub, [ch])}`);
    expect(errorOf(poll)).toEqual({ status: 429, code: 'rate_limited', retryAfter: '5' });
    expect(await upgradeStatus(`${base.replace(/^http/, 'ws')}/live?ticket=${await ticketFor(redis, sub, [ch], 'ws')}`)).toBe(429);
    const other = `other-${uid()}`;
    expect(await opened(stream(`${base}/events?channels=${ch}&ticket=${await ticketFor(redis, other, [ch])}`, '198.51.100.6'))).toBe(true);
    // A socket that closes frees its place.
    live.close();
    await eventually(() => svc.sockets === 0, 5000, 'the socket released');
    expect(await opened(stream(`${base}/events?channels=${ch}&ticket=${await ticketFor(redis, sub, [ch])}`, '198.51.100.6'))).toBe(true);
  });

  test('tickets per minute: the fourth of 3 is 429 rate_limited, nothing stored; another user is not affected', async () => {
    const prefix = `tr${uid()}:`;
    const config = coreConfig({ keyPrefix: prefix, userTicketsPerMinute: 3 });
    const alice = { kind: 'user', sub: `alice-${uid()}` } as const;
    for (let i = 0; i < 3; i++) await issueTicket({ identity: alice, channels: ['chat:x'] }, { redis, config });
    const stored = (await redis.keys(`${prefix}tk:*`)).length;
    const refused = await issueTicket({ identity: alice, channels: ['chat:x'] }, { redis, config }).then(() => undefined, (err: unknown) => err);
    expect(refused).toMatchObject({ code: 'rate_limited', status: 429, message: expect.stringMatching(/At most 3 tickets per minute per user; retry in \d+ s\./) });
    // What POST /tickets answers with it (the HTTP handlers' one error mapping): 429 with Retry-After.
    const answer = errorResult(refused);
    expect({ status: answer.statusCode, retryAfter: Number(answer.headers?.['retry-after']) }).toEqual({ status: 429, retryAfter: expect.any(Number) });
    expect(Number(answer.headers?.['retry-after'])).toBeGreaterThan(0);
    expect((await redis.keys(`${prefix}tk:*`)).length).toBe(stored);
    await expect(issueTicket({ identity: { kind: 'user', sub: `bob-${uid()}` }, channels: ['chat:x'] }, { redis, config })).resolves.toMatchObject({ transport: 'sse' });
  });

  test('API Gateway connections ($connect) across the deployment: past a cap of 2 the third is 429 rate_limited and nothing is registered; a disconnect, or a registration that expired, frees its place; another user is not affected', async () => {
    const prefix = `uc${uid()}:`;
    const keys = new Keys(prefix);
    const deps = { redis, config: coreConfig({ keyPrefix: prefix, userConnections: 2 }) };
    const sub = `gw-${uid()}`;
    const grant = (s: string) => ({ sub: s, channels: [`chat:${uid()}`], byBackend: false, epoch: 0 });
    await connectSession('c1', grant(sub), deps);
    await connectSession('c2', grant(sub), deps);
    await expect(connectSession('c3', grant(sub), deps)).rejects.toMatchObject({ code: 'rate_limited', status: 429 });
    expect(await redis.exists(keys.connection('c3'))).toBe(0);
    expect((await redis.smembers(keys.userConnections(sub))).sort()).toEqual(['c1', 'c2']);
    await expect(connectSession('o1', grant(`other-${uid()}`), deps)).resolves.toHaveLength(1);
    await disconnectSession('c1', deps);
    await connectSession('c3', grant(sub), deps);
    // A connection whose registration expired (API Gateway never sent $disconnect) no longer counts.
    await redis.del(keys.connection('c2'));
    await connectSession('c4', grant(sub), deps);
    expect((await redis.smembers(keys.userConnections(sub))).sort()).toEqual(['c3', 'c4']);
  });

  test('the API Gateway upgrade (local gateway, $connect handler) past USER_CONNECTIONS: 429; the user\'s open socket keeps working, another user connects', async () => {
    const { startLocalStack } = await import('../../local/stack');
    const stack = await startLocalStack({
      logger: pino({ level: 'silent' }),
      webSocketMode: 'both',
      env: { KEY_PREFIX: `ug${uid()}:`, USER_CONNECTIONS: '1', LOG_LEVEL: 'silent', WS_GONE_GRACE_MS: '0' },
    });
    cleanup.push(() => stack.close());
    const ticket = async (sub: string, ch: string) => {
      const r = await fetch(stack.outputs.TicketUrl, { method: 'POST', headers: { 'content-type': 'application/json', 'x-local-user': sub }, body: JSON.stringify({ channels: [ch], transport: 'ws' }) });
      return ((await r.json()) as { ticket: string }).ticket;
    };
    const sub = `gw-${uid()}`;
    const ch = `chat:${uid()}`;
    const first = await connectWs(`${stack.outputs.WebSocketUrl}?ticket=${await ticket(sub, ch)}`);
    cleanup.push(() => first.close());
    expect(await upgradeStatus(`${stack.outputs.WebSocketUrl}?ticket=${await ticket(sub, ch)}`)).toBe(429);
    expect(await first.request({ action: 'ping' }, 'pong')).toMatchObject({ type: 'pong' });
    expect(await upgradeStatus(`${stack.outputs.WebSocketUrl}?ticket=${await ticket(`other-${uid()}`, ch)}`)).toBe(101);
  });
});
