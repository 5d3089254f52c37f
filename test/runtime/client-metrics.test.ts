/**
 * `POST /client-metrics` on the tasks and the client SDK's reporter: what a report may carry, who may send it (per
 * namespace), the size and rate limits with JSON errors, and the EMF documents the task writes by namespace and
 * transport. The reporter runs against the local stack and its counts must equal what the clients received.
 */
import type Redis from 'ioredis';
import pino from 'pino';
import { LATENCY_BUCKETS, type Client } from '../../client/src/index';
import { LATENCY_BUCKETS_MS } from '../../contract/client-metrics';
import type { LocalStack } from '../../local/stack';
import type { RealtimeServer } from '../../service/realtime-server';
import { localTickets, nodeClient, publish, record, until } from '../support/client-kit';
import { connectRedis, startService, TEST_NAMESPACES, ticketFor, uid } from '../support/harness';

process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';

const NAMESPACES = { ...TEST_NAMESPACES, scores: { ...TEST_NAMESPACES.scores, clientMetrics: 'anonymous' }, user: { ...TEST_NAMESPACES.user, clientMetrics: 'off' } };
const zeros = () => LATENCY_BUCKETS_MS.map(() => 0);
const stats = (o: Partial<Record<'received' | 'duplicates' | 'gaps' | 'resets' | 'reconnects' | 'switches', number>> & { latency?: number[] } = {}) => ({ received: 0, duplicates: 0, gaps: 0, resets: 0, reconnects: 0, switches: 0, latency: zeros(), ...o });

interface Emf {
  _aws: { CloudWatchMetrics: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string; Unit: string }[] }[] };
  [k: string]: unknown;
}

it('the client and the service agree on the latency buckets', () => {
  expect(LATENCY_BUCKETS).toEqual(LATENCY_BUCKETS_MS);
});

describe('POST /client-metrics', () => {
  let service: RealtimeServer;
  let base: string;
  let redis: Redis;
  let now = 1_800_000_000_000;
  beforeAll(async () => {
    redis = await connectRedis();
    ({ service, base } = await startService({ NAMESPACES_JSON: JSON.stringify(NAMESPACES), CLIENT_METRICS_PER_MINUTE: '3', CLIENT_METRICS_MAX_BYTES: '2048', METRICS_INTERVAL_MS: '0' }, { now: () => now }));
  });
  afterAll(async () => {
    await service?.close();
    redis?.disconnect();
  });
  // Each test in its own rate window (the clock is the test's).
  beforeEach(() => {
    now += 60_000;
    service.metrics.clients.drain();
  });

  const post = (body: unknown, query = '', headers: Record<string, string> = {}) =>
    fetch(`${base}/client-metrics${query}`, { method: 'POST', headers: { 'content-type': 'text/plain', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  const error = async (r: Response) => ({ status: r.status, body: (await r.json()) as { error: { code: string; message: string } } });

  it('anonymous reports of an anonymous namespace: 204, summed per namespace and transport into one EMF document each', async () => {
    const lat = zeros();
    lat[3] = 4; // 4 events at <= 100 ms
    lat[6] = 1; // 1 at <= 1000 ms
    expect((await post({ transport: 'ws', namespaces: { scores: stats({ received: 5, duplicates: 1, gaps: 2, reconnects: 1, latency: lat }) } })).status).toBe(204);
    // A report of an SDK before gaps were counted: no `gaps` field, still taken.
    const { gaps: _none, ...older } = stats({ received: 2, resets: 1, switches: 1, latency: [2, ...zeros().slice(1)] });
    expect((await post({ transport: 'ws', namespaces: { scores: older } })).status).toBe(204);
    expect((await post({ transport: 'sse', namespaces: { scores: stats({ received: 1 }) } })).status).toBe(204);
    const docs = service.metrics.clients.drain() as Emf[];
    expect(docs).toHaveLength(2);
    const ws = docs.find((d) => d.Transport === 'ws')!;
    expect(ws._aws.CloudWatchMetrics[0]).toMatchObject({ Namespace: 'RealtimeBlueprint', Dimensions: [expect.arrayContaining(['Namespace', 'Transport'])] });
    expect(ws).toMatchObject({ Namespace: 'scores', Transport: 'ws', ClientReports: 2, ClientReceived: 7, ClientDuplicates: 1, ClientGaps: 2, ClientResets: 1, ClientReconnects: 1, ClientTransportSwitches: 1, ClientLatencyP50: 100, ClientLatencyP99: 1000 });
    expect(docs.find((d) => d.Transport === 'sse')).toMatchObject({ Namespace: 'scores', ClientReports: 1, ClientReceived: 1 });
    // Drained: the next flush starts from nothing.
    expect(service.metrics.clients.drain()).toEqual([]);
  });

  it('an authenticated namespace needs a ticket granting one of its channels; an `off` namespace takes none', async () => {
    const chat = { transport: 'sse', namespaces: { chat: stats({ received: 1 }) } };
    expect(await error(await post(chat))).toMatchObject({ status: 401, body: { error: { code: 'unauthorized' } } });
    const other = await ticketFor(redis, 'amy', [`tiny:${uid()}`]);
    expect(await error(await post(chat, `?ticket=${other}`))).toMatchObject({ status: 403, body: { error: { code: 'channel_not_granted' } } });
    const t = await ticketFor(redis, 'amy', [`chat:${uid()}`]);
    expect((await post(chat, `?ticket=${t}`)).status).toBe(204);
    // Spent: single use, like a connection's.
    expect(await error(await post(chat, `?ticket=${t}`))).toMatchObject({ status: 401, body: { error: { code: 'ticket_invalid' } } });
    expect(await error(await post({ transport: 'sse', namespaces: { user: stats({ received: 1 }) } }))).toMatchObject({ status: 403, body: { error: { code: 'forbidden' } } });
    expect(service.metrics.clients.drain()).toEqual([expect.objectContaining({ Namespace: 'chat', ClientReceived: 1 })]);
  });

  it.each([
    ['not JSON', '{', 400, 'invalid_json'],
    ['a negative count', { transport: 'ws', namespaces: { scores: stats({ received: -1 }) } }, 400, 'bad_request'],
    ['a histogram of the wrong length', { transport: 'ws', namespaces: { scores: { ...stats(), latency: [1, 2] } } }, 400, 'bad_request'],
    ['a field the contract does not have', { transport: 'ws', namespaces: { scores: { ...stats(), user: 'amy' } } }, 400, 'bad_request'],
    ['an unknown transport', { transport: 'carrier-pigeon', namespaces: { scores: stats() } }, 400, 'bad_request'],
    ['no namespace', { transport: 'ws', namespaces: {} }, 400, 'bad_request'],
    ['an unknown namespace', { transport: 'ws', namespaces: { nope: stats() } }, 400, 'bad_request'],
    ['a body over CLIENT_METRICS_MAX_BYTES', { transport: 'ws', namespaces: { scores: stats() }, pad: 'x'.repeat(3000) }, 413, 'payload_too_large'],
  ])('%s: a JSON error, nothing counted', async (_what, body, status, code) => {
    const r = await error(await post(body));
    expect(r).toMatchObject({ status, body: { error: { code, message: expect.any(String) } } });
    expect(r.body.error.message).not.toMatch(/\bat \w+ \(/); // no stack trace
    expect(service.metrics.clients.drain()).toEqual([]);
  });

  it('GET is 405; past CLIENT_METRICS_PER_MINUTE per client a 429 with Retry-After, until the next minute', async () => {
    expect((await error(await fetch(`${base}/client-metrics`))).status).toBe(405);
    const ok = { transport: 'ws', namespaces: { scores: stats({ received: 1 }) } };
    for (let i = 0; i < 3; i++) expect((await post(ok)).status).toBe(204);
    const r = await post(ok);
    expect(r.status).toBe(429);
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0);
    expect((await r.json()).error.code).toBe('rate_limited');
    expect(service.metrics.clients.drain()).toEqual([expect.objectContaining({ ClientReports: 3, ClientReceived: 3 })]);
    now += 60_000;
    expect((await post(ok)).status).toBe(204);
  });

  it('CLIENT_METRICS_PER_MINUTE=0 turns the route off (404)', async () => {
    const off = await startService({ CLIENT_METRICS_PER_MINUTE: '0', METRICS_INTERVAL_MS: '0' });
    try {
      expect(await error(await fetch(`${off.base}/client-metrics`, { method: 'POST', body: '{}' }))).toMatchObject({ status: 404, body: { error: { code: 'not_found' } } });
    } finally {
      await off.service.close();
    }
  });
});

describe('the SDK reporter against the local stack', () => {
  let stack: LocalStack;
  const clients: Client[] = [];
  beforeAll(async () => {
    const { startLocalStack } = await import('../../local/stack');
    stack = await startLocalStack({ logger: pino({ level: 'silent' }), env: { NAMESPACES_JSON: JSON.stringify(NAMESPACES), METRICS_INTERVAL_MS: '0', LOG_LEVEL: 'silent' } });
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await stack?.close();
  });

  it.each(['ws', 'sse', 'poll'] as const)('%s: the reports add up to what the client received, by namespace and transport; nothing sent before there is something to say', async (transport) => {
    const url = new URL('/client-metrics', stack.outputs.SseUrl).toString();
    const ch = `scores:${uid()}`;
    const posts: string[] = [];
    const f = ((u: string, init?: RequestInit) => {
      if (String(u).includes('/client-metrics')) posts.push(String(init?.body));
      return fetch(u, init);
    }) as typeof fetch;
    const rec = record(nodeClient({ ticket: localTickets(stack.outputs.TicketUrl, 'rae'), transports: [transport], pollUrl: stack.outputs.PollUrl, fetch: f, report: { url, intervalMs: 100, anonymous: true } }), [ch]);
    clients.push(rec.client);
    await until(() => rec.client.state === 'open', 'open');
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await publish(stack.outputs.PublishUrl, ch, { i }));
    await until(() => rec.events.length === 5, '5 events');
    // The task's documents, drained as they come, until the reports cover every event the client got.
    const docs: Record<string, number>[] = [];
    await until(
      () => {
        docs.push(...(stack.sse.metrics.clients.drain() as Record<string, number>[]));
        return docs.reduce((a, d) => a + d.ClientReceived, 0) >= 5;
      },
      'the reports of 5 events',
      20_000,
      () => ({ docs, posts }),
    );
    rec.client.close();
    expect(docs.every((d) => (d as unknown as Record<string, string>).Namespace === 'scores' && (d as unknown as Record<string, string>).Transport === transport)).toBe(true);
    expect(docs.reduce((a, d) => a + d.ClientReceived, 0)).toBe(rec.client.stats()[ch].received);
    expect(docs.reduce((a, d) => a + d.ClientDuplicates, 0)).toBe(rec.client.stats()[ch].duplicates);
    expect(docs.reduce((a, d) => a + d.ClientGaps, 0)).toBe(rec.client.stats()[ch].gaps);
    // What is sent: counts by namespace, no channel name, id or data.
    expect(posts.join()).not.toContain(ch);
    for (const id of ids) expect(posts.join()).not.toContain(id);
    expect(JSON.parse(posts[0])).toEqual({ transport, namespaces: { scores: expect.objectContaining({ gaps: 0, latency: expect.any(Array) }) } });
  });
});
