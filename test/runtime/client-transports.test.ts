/**
 * The client SDK against the local stack, in Node: every transport, every fallback, resume across
 * transport switches under a publisher that runs throughout, ticket failures, server-side drops.
 * Real servers (SSE service, WebSocket gateway with the Lambda handlers, HTTP API, Redis); the
 * network is failed with TCP relays, the ticket endpoint with a small HTTP proxy.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import type { LocalStack } from '../../local/stack';
import { RealtimeClientError, type TicketAnswer, type TicketRequest } from '../../client/src/index';
import { localTickets, nodeClient, publish, record, Relay, sameIds, startPublisher, statsTruth, until, type Recorder } from '../support/client-kit';
import { uid } from '../support/harness';

process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';

let stack: LocalStack;
const clients: Recorder[] = [];
const relays: Relay[] = [];

beforeAll(async () => {
  const { startLocalStack } = await import('../../local/stack');
  stack = await startLocalStack({ logger: pino({ level: 'silent' }), env: { RETRY_MS: '200', HEARTBEAT_MS: '1000', POLL_TIMEOUT_MS: '2000', LOG_LEVEL: 'silent' } });
});
afterEach(async () => {
  for (const r of clients.splice(0)) r.client.close();
  for (const r of relays.splice(0)) await r.close();
});
afterAll(async () => {
  await stack?.close();
});

const relay = async (url: string): Promise<Relay> => {
  const r = new Relay(Number(new URL(url).port));
  await r.start();
  relays.push(r);
  return r;
};
const track = (r: Recorder): Recorder => {
  clients.push(r);
  return r;
};
/** A port nothing listens on (a relay that refuses every connection). */
const deadEnd = async (url: string): Promise<string> => {
  const r = await relay(url);
  r.cut();
  return r.via(url);
};

describe('each transport', () => {
  it.each(['ws', 'sse', 'poll'] as const)('%s: delivers events in order, typed, with the connection state as events', async (transport) => {
    const ch = `chat:t-${uid()}`;
    const tickets = localTickets(stack.outputs.TicketUrl, 'alice');
    const rec = track(record(nodeClient({ ticket: tickets, transports: [transport] }), [ch]));
    await until(() => rec.client.state === 'open', 'open');
    expect(rec.client.transport).toBe(transport);
    expect(rec.states.slice(0, 2)).toEqual(['connecting', 'open']);
    expect(tickets.calls[0].req).toEqual({ transport: transport === 'ws' ? 'ws' : 'sse', channels: [ch] });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await publish(stack.outputs.PublishUrl, ch, { i }));
    await until(() => rec.events.length >= 5, '5 events', 20_000, () => rec.events);
    sameIds(rec.ids(), ids);
    expect(rec.events.map((e) => e.data)).toEqual([0, 1, 2, 3, 4].map((i) => ({ i })));
    expect(rec.events[0]).toMatchObject({ channel: ch, type: 'update' });
    rec.client.close();
    expect(rec.client.state).toBe('closed');
  });

  it.each(['ws', 'sse', 'poll'] as const)('%s: several channels over one connection; since replays; unsubscribe stops delivery', async (transport) => {
    const a = `chat:a-${uid()}`;
    const b = `chat:b-${uid()}`;
    const before = await publish(stack.outputs.PublishUrl, a, { n: 'before' });
    const missed = await publish(stack.outputs.PublishUrl, a, { n: 'missed' });
    const client = nodeClient({ ticket: localTickets(stack.outputs.TicketUrl, 'bob'), transports: [transport] });
    const rec = track(record(client, []));
    const got: Record<string, string[]> = { [a]: [], [b]: [] };
    client.subscribe(a, { onEvent: (e) => got[a].push(e.id), since: before });
    client.subscribe(b, { onEvent: (e) => got[b].push(e.id) });
    await until(() => got[a].length === 1 && client.state === 'open', 'the missed event', 20_000, () => got);
    expect(got[a]).toEqual([missed]);
    const opens = rec.opens.length;
    const x = await publish(stack.outputs.PublishUrl, b, { n: 1 });
    const y = await publish(stack.outputs.PublishUrl, a, { n: 2 });
    await until(() => got[a].length === 2 && got[b].length === 1, 'both channels', 20_000, () => got);
    expect(got).toEqual({ [a]: [missed, y], [b]: [x] });
    expect(rec.opens.length).toBe(opens);
    client.unsubscribe(b);
    await publish(stack.outputs.PublishUrl, b, { n: 'after' });
    const z = await publish(stack.outputs.PublishUrl, a, { n: 3 });
    await until(() => got[a].length === 3, 'a after unsubscribing b', 20_000, () => got);
    expect(got).toEqual({ [a]: [missed, y, z], [b]: [x] });
  });

  it.each(['ws', 'sse', 'poll'] as const)('%s: a channel subscribed again after its unsubscribe (in the same tick, and later) delivers again, from its since', async (transport) => {
    const a = `chat:a-${uid()}`;
    const b = `chat:b-${uid()}`;
    const client = nodeClient({ ticket: localTickets(stack.outputs.TicketUrl, 'bob'), transports: [transport] });
    track(record(client, []));
    const got: string[] = [];
    const onEvent = (e: { id: string }) => void got.push(e.id);
    client.subscribe(a, { onEvent: () => undefined });
    client.subscribe(b, { onEvent });
    await until(() => client.state === 'open', 'open');
    const e1 = await publish(stack.outputs.PublishUrl, b, { n: 1 });
    await until(() => got.length === 1, 'the first event', 20_000, () => got);
    // In the same tick: the server must not be left with only the unsubscribe.
    client.unsubscribe(b);
    client.subscribe(b, { onEvent, since: e1 });
    const e2 = await publish(stack.outputs.PublishUrl, b, { n: 2 });
    await until(() => got.includes(e2), 'the event after subscribing again in the same tick', 20_000, () => got);
    // Later, with an event published while away: since replays it.
    client.unsubscribe(b);
    const e3 = await publish(stack.outputs.PublishUrl, b, { n: 3 });
    client.subscribe(b, { onEvent, since: e2 });
    const e4 = await publish(stack.outputs.PublishUrl, b, { n: 4 });
    await until(() => got.includes(e4), 'the event after subscribing again later', 20_000, () => got);
    expect(got).toEqual([e1, e2, e3, e4]);
  });
});

describe('publish over WebSocket', () => {
  it('resolves with the server’s published answer and reaches other clients; rejects with the server’s error code', async () => {
    const ch = `chat:p-${uid()}`;
    const sender = nodeClient({ ticket: localTickets(stack.outputs.TicketUrl, 'carol'), transports: ['ws'] });
    const rs = track(record(sender, [ch]));
    const other = track(record(nodeClient({ ticket: localTickets(stack.outputs.TicketUrl, 'dave'), transports: ['sse'] }), [ch]));
    await until(() => sender.state === 'open' && other.client.state === 'open', 'both open');
    const answers = await Promise.all([sender.publish(ch, 'message', { text: 'one' }), sender.publish(ch, 'message', { text: 'two' }, { idempotencyKey: `k-${uid()}` })]);
    expect(answers.map((a) => a.channel)).toEqual([ch, ch]);
    await until(() => other.events.length === 2 && rs.events.length === 2, 'both events on both clients', 20_000, () => [other.events, rs.events]);
    sameIds(other.ids(), answers.map((a) => a.id));
    sameIds(rs.ids(), answers.map((a) => a.id));
    // `scores` is published by backends only.
    await expect(sender.publish(`scores:${uid()}`, 'goal', {})).rejects.toMatchObject({ code: 'forbidden' });
    await expect(sender.publish(ch, 'ready', {})).rejects.toMatchObject({ code: expect.stringMatching(/^(bad_request|invalid_type)$/) });
    // Still usable after the errors.
    await expect(sender.publish(ch, 'message', { text: 'three' })).resolves.toMatchObject({ channel: ch });
  });

  it('a publish that reached the server but whose answer was lost is resent under the same key: one event (a later marker shows no duplicate)', async () => {
    const ch = `chat:r-${uid()}`;
    const wsRelay = await relay(stack.outputs.WebSocketUrl);
    const client = nodeClient({ ticket: localTickets(stack.outputs.TicketUrl, 'erin', (t) => ({ ...t, wsUrl: wsRelay.via(t.wsUrl!) })), transports: ['ws'] });
    const rec = track(record(client, [ch]));
    const observer = track(record(nodeClient({ ticket: localTickets(stack.outputs.TicketUrl, 'eli'), transports: ['sse'] }), [ch]));
    await until(() => client.state === 'open' && observer.client.state === 'open', 'both open');
    // Answered once its subscribe was (one request frame at a time): nothing is waiting before the next.
    const first = await client.publish(ch, 'message', { text: 'first' });
    // The server hears the publish; its `published` answer never comes back.
    wsRelay.deafen();
    const p = client.publish(ch, 'message', { text: 'answer lost' });
    await until(() => observer.events.length === 2, 'the publish reached the server', 20_000, () => observer.events);
    wsRelay.cut();
    wsRelay.restore();
    // Sent again on the next connection under the same key: the server answers with the first id.
    const answer = await p;
    expect(answer.id).toBe(observer.ids()[1]);
    expect(rec.opens.length).toBeGreaterThanOrEqual(2);
    const marker = await publish(stack.outputs.PublishUrl, ch, { marker: true });
    await until(() => rec.ids().includes(marker) && observer.ids().includes(marker), 'the marker on both clients', 20_000, () => [rec.events, observer.events]);
    sameIds(rec.ids(), [first.id, answer.id, marker]);
    sameIds(observer.ids(), [first.id, answer.id, marker]);
  });

  it('rejects publish on a client without the WebSocket transport', async () => {
    const client = nodeClient({ ticket: localTickets(stack.outputs.TicketUrl, 'fay'), transports: ['sse'] });
    track(record(client, []));
    await expect(client.publish('chat:x', 'message', {})).rejects.toMatchObject({ code: 'not_websocket' });
  });
});

describe('fallback', () => {
  it('WebSocket refused: falls back to SSE, remembers the winner for the next client', async () => {
    const ch = `chat:f-${uid()}`;
    const dead = await deadEnd(stack.outputs.WebSocketUrl);
    const store = new Map<string, string>();
    const storage = { getItem: (k: string) => store.get(k) ?? null, setItem: (k: string, v: string) => void store.set(k, v) };
    const tickets = localTickets(stack.outputs.TicketUrl, 'gus', (t) => (t.wsUrl ? { ...t, wsUrl: `${dead.split('?')[0]}?ticket=${t.ticket}` } : t));
    const rec = track(record(nodeClient({ ticket: tickets, transports: ['ws', 'sse', 'poll'], storage }), [ch]));
    await until(() => rec.client.state === 'open', 'open', 20_000, () => rec);
    expect(rec.client.transport).toBe('sse');
    expect(tickets.calls.map((c) => c.req.transport)).toEqual(['ws', 'sse']);
    const id = await publish(stack.outputs.PublishUrl, ch, {});
    await until(() => rec.events.length === 1, 'event');
    expect(rec.ids()).toEqual([id]);
    // A second client with the same storage starts with the winner.
    const t2 = localTickets(stack.outputs.TicketUrl, 'gus');
    const rec2 = track(record(nodeClient({ ticket: t2, transports: ['ws', 'sse', 'poll'], storage }), [ch]));
    await until(() => rec2.client.state === 'open', 'second open');
    expect(t2.calls.map((c) => c.req.transport)).toEqual(['sse']);
  });

  it('streams blocked (WebSocket refused, SSE never answers): falls back to long polling after the open timeout', async () => {
    const ch = `chat:g-${uid()}`;
    const dead = await deadEnd(stack.outputs.WebSocketUrl);
    // An SSE endpoint behind a proxy that buffers streams forever: the request is accepted, nothing comes back.
    const silent: Server = createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const silentBase = `http://127.0.0.1:${(silent.address() as AddressInfo).port}/events`;
    try {
      const tickets = localTickets(stack.outputs.TicketUrl, 'hal', (t): TicketAnswer => (t.wsUrl ? { ...t, wsUrl: `${dead.split('?')[0]}?ticket=${t.ticket}` } : { ...t, sseUrl: `${silentBase}?x=1` }));
      const rec = track(record(nodeClient({ ticket: tickets, transports: ['ws', 'sse', 'poll'], pollUrl: stack.outputs.PollUrl, openTimeoutMs: 1500 }), [ch]));
      await until(() => rec.client.state === 'open', 'open', 20_000, () => rec);
      expect(rec.client.transport).toBe('poll');
      const ids = [await publish(stack.outputs.PublishUrl, ch, { n: 1 }), await publish(stack.outputs.PublishUrl, ch, { n: 2 })];
      await until(() => rec.events.length === 2, 'events over poll', 20_000, () => rec.events);
      sameIds(rec.ids(), ids);
      expect(rec.errors).toContain('open_timeout');
    } finally {
      silent.closeAllConnections();
      silent.close();
    }
  });
});

describe('resume', () => {
  it('WS → SSE → poll under a publisher running throughout: 0 lost, 0 duplicates, in order', async () => {
    const ch = `chat:s-${uid()}`;
    const wsRelay = await relay(stack.outputs.WebSocketUrl);
    const sseRelay = await relay(stack.outputs.SseUrl);
    const tickets = localTickets(stack.outputs.TicketUrl, 'ivy', (t) => (t.wsUrl ? { ...t, wsUrl: wsRelay.via(t.wsUrl) } : { ...t, sseUrl: sseRelay.via(t.sseUrl!) }));
    const rec = track(record(nodeClient({ ticket: tickets, transports: ['ws', 'sse', 'poll'], pollUrl: stack.outputs.PollUrl, random: () => 0.5 }), [ch]));
    await until(() => rec.client.state === 'open', 'open');
    const pub = startPublisher(stack.outputs.PublishUrl, ch, 120, 15);
    const step = async (n: number) => until(() => pub.ids.length >= n, `${n} published`, 30_000);
    await step(20);
    wsRelay.cut();
    await until(() => rec.client.transport === 'sse', 'switch to SSE', 30_000, () => rec.opens);
    await step(50);
    sseRelay.cut();
    await until(() => rec.client.transport === 'poll', 'switch to poll', 30_000, () => rec.opens);
    await step(80);
    wsRelay.restore();
    sseRelay.restore();
    await pub.done;
    await until(() => rec.events.length >= pub.ids.length, 'every event', 30_000, () => ({ got: rec.events.length, want: pub.ids.length }));
    sameIds(rec.ids(), pub.ids);
    expect(rec.opens.slice(0, 3)).toEqual(['ws', 'sse', 'poll']);
    // The client's own counts: every event, and each reconnect and switch the recorder saw.
    expect(rec.client.stats()[ch]).toMatchObject({ ...statsTruth(rec, ch), received: pub.ids.length });
    expect(rec.client.stats()[ch].switches).toBeGreaterThanOrEqual(2);
    // Every connection attempt took its own ticket.
    expect(new Set(tickets.calls.map((c) => c.ticket)).size).toBe(tickets.calls.length);
  });
});

describe('one cursor per connection (positions per channel)', () => {
  it('SSE → poll with a quiet and a busy channel: the poll resumes each channel from its own position (the connection cursor), nothing replayed twice', async () => {
    const quiet = `chat:q-${uid()}`;
    const busy = `chat:b-${uid()}`;
    const sseRelay = await relay(stack.outputs.SseUrl);
    const tickets = localTickets(stack.outputs.TicketUrl, 'ida', (t) => ({ ...t, sseUrl: sseRelay.via(t.sseUrl!) }));
    const rec = track(record(nodeClient({ ticket: tickets, transports: ['sse', 'poll'], pollUrl: stack.outputs.PollUrl }), [quiet, busy]));
    await until(() => rec.client.state === 'open', 'open');
    const ids = [await publish(stack.outputs.PublishUrl, quiet, { n: 0 })];
    for (let i = 0; i < 10; i++) ids.push(await publish(stack.outputs.PublishUrl, busy, { n: i }));
    await until(() => rec.events.length === 11, 'every event on SSE', 20_000, () => rec.client.stats());
    sseRelay.cut();
    await until(() => rec.client.transport === 'poll', 'the switch to poll', 20_000, () => rec.opens);
    const after = await publish(stack.outputs.PublishUrl, busy, { n: 10 });
    await until(() => rec.ids(busy).includes(after), 'the event after the switch', 20_000, () => rec.client.stats());
    sameIds(rec.ids(), [...ids, after]);
    // A cursor of the quiet channel's position for both would have replayed the busy channel's ten events again.
    expect(rec.client.stats()[busy]).toMatchObject({ received: 11, duplicates: 0, gaps: 0 });
    expect(rec.client.stats()[quiet]).toMatchObject({ received: 1, duplicates: 0, gaps: 0 });
  });
});

describe('tickets', () => {
  /** A ticket endpoint in front of the real one that answers `script` first (status per call), then forwards. */
  const ticketProxy = async (script: number[]) => {
    const seen: number[] = [];
    const server = createServer((req, res) => {
      const status = script.shift();
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', async () => {
        if (status !== undefined) {
          seen.push(status);
          const code = { 401: 'unauthorized', 403: 'forbidden', 429: 'rate_limited', 500: 'internal' }[status] ?? 'x';
          res.writeHead(status, { 'content-type': 'application/json', ...(status === 429 ? { 'retry-after': '1' } : {}) });
          res.end(JSON.stringify({ error: { code, message: 'scripted' } }));
          return;
        }
        const r = await fetch(stack.outputs.TicketUrl, { method: 'POST', headers: { 'content-type': 'application/json', 'x-local-user': 'jo' }, body: Buffer.concat(chunks) });
        seen.push(r.status);
        res.writeHead(r.status, { 'content-type': 'application/json' });
        res.end(await r.text());
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/tickets`, seen, close: () => server.close() };
  };

  it('500 and 429 (Retry-After) are retried with backoff, then the client opens', async () => {
    const proxy = await ticketProxy([500, 429]);
    try {
      const { ticketFrom } = await import('../../client/src/index');
      const rec = track(record(nodeClient({ ticket: ticketFrom(proxy.url), transports: ['sse'] }), [`chat:k-${uid()}`]));
      await until(() => rec.client.state === 'open', 'open', 20_000, () => rec);
      expect(proxy.seen).toEqual([500, 429, 201]);
      expect(rec.errors).toEqual(['internal', 'rate_limited']);
      expect(rec.states).toEqual(['connecting', 'reconnecting', 'open']);
    } finally {
      proxy.close();
    }
  });

  it.each([401, 403])('%i from the ticket call is terminal: the client closes with that error', async (status) => {
    const proxy = await ticketProxy([status]);
    try {
      const { ticketFrom } = await import('../../client/src/index');
      const rec = track(record(nodeClient({ ticket: ticketFrom(proxy.url), transports: ['ws', 'sse'] }), [`chat:k-${uid()}`]));
      await until(() => rec.client.state === 'closed', 'closed', 20_000, () => rec);
      expect(proxy.seen).toEqual([status]);
      expect(rec.errors).toEqual([status === 401 ? 'unauthorized' : 'forbidden']);
    } finally {
      proxy.close();
    }
  });
});

describe('server-side drops', () => {
  const managementHeaders = { authorization: 'AWS4-HMAC-SHA256 Credential=local/20260101/local/execute-api/aws4_request' };

  it('the gateway closes the socket (management API DELETE @connections): reconnects with since, nothing lost', async () => {
    const ch = `chat:d-${uid()}`;
    const rec = track(record(nodeClient({ ticket: localTickets(stack.outputs.TicketUrl, 'kim'), transports: ['ws'] }), [ch]));
    await until(() => rec.client.state === 'open' && stack.ws.connectionCount > 0, 'open');
    const pub = startPublisher(stack.outputs.PublishUrl, ch, 40, 20);
    await until(() => pub.ids.length >= 10, '10 published');
    for (const id of stack.ws.connectionIds()) {
      const r = await fetch(`${stack.ws.managementEndpoint}/@connections/${encodeURIComponent(id)}`, { method: 'DELETE', headers: managementHeaders });
      expect([204, 410]).toContain(r.status);
    }
    await pub.done;
    await until(() => rec.events.length >= pub.ids.length, 'every event', 30_000, () => ({ got: rec.events.length, want: pub.ids.length }));
    sameIds(rec.ids(), pub.ids);
    expect(rec.opens.length).toBeGreaterThanOrEqual(2);
  });

  it('the gateway drops the TCP connection without a close frame: reconnects, nothing lost', async () => {
    const ch = `chat:e-${uid()}`;
    const rec = track(record(nodeClient({ ticket: localTickets(stack.outputs.TicketUrl, 'lee'), transports: ['ws'] }), [ch]));
    await until(() => rec.client.state === 'open', 'open');
    const pub = startPublisher(stack.outputs.PublishUrl, ch, 30, 20);
    await until(() => pub.ids.length >= 10, '10 published');
    const ids = stack.ws.connectionIds();
    expect(ids).toHaveLength(1);
    stack.ws.kill(ids[0]);
    await pub.done;
    await until(() => rec.events.length >= pub.ids.length, 'every event', 30_000, () => ({ got: rec.events.length, want: pub.ids.length }));
    sameIds(rec.ids(), pub.ids);
    // It did reconnect: a second open, on a new connection.
    expect(rec.opens).toEqual(['ws', 'ws']);
    expect(stack.ws.connectionIds()).not.toContain(ids[0]);
    expect(rec.client.stats()[ch]).toMatchObject({ received: pub.ids.length, resets: 0, reconnects: 1, switches: 0, transport: 'ws' });
  });

  it('SSE: the network drops the stream, then a dead stream (no heartbeat) is detected: resumes by lastEventId, nothing lost', async () => {
    const ch = `chat:h-${uid()}`;
    const sseRelay = await relay(stack.outputs.SseUrl);
    const rec = track(record(nodeClient({ ticket: localTickets(stack.outputs.TicketUrl, 'max', (t) => ({ ...t, sseUrl: sseRelay.via(t.sseUrl!) })), transports: ['sse'], deadAfterMs: 4000 }), [ch]));
    await until(() => rec.client.state === 'open', 'open');
    const pub = startPublisher(stack.outputs.PublishUrl, ch, 60, 20);
    await until(() => pub.ids.length >= 10, '10 published');
    sseRelay.cut();
    sseRelay.restore();
    await until(() => pub.ids.length >= 30 && rec.opens.length >= 2, 'reconnected', 30_000, () => rec.opens);
    // The stream stays open but nothing arrives any more: only the client's heartbeat deadline can tell.
    sseRelay.freeze();
    await pub.done;
    await until(() => rec.events.length >= pub.ids.length, 'every event', 30_000, () => ({ got: rec.events.length, want: pub.ids.length }));
    sameIds(rec.ids(), pub.ids);
    expect(rec.errors).toContain('dead');
  });

  it('long poll: the network drops a waiting poll, the client polls again from its cursor', async () => {
    const ch = `chat:l-${uid()}`;
    const pollRelay = await relay(stack.outputs.PollUrl);
    const rec = track(record(nodeClient({ ticket: localTickets(stack.outputs.TicketUrl, 'ned'), transports: ['poll'], pollUrl: pollRelay.via(stack.outputs.PollUrl) }), [ch]));
    await until(() => rec.client.state === 'open', 'open');
    const pub = startPublisher(stack.outputs.PublishUrl, ch, 40, 20);
    await until(() => pub.ids.length >= 10, '10 published');
    pollRelay.cut();
    await until(() => pub.ids.length >= 20, '20 published');
    pollRelay.restore();
    await pub.done;
    await until(() => rec.events.length >= pub.ids.length, 'every event', 30_000, () => ({ got: rec.events.length, want: pub.ids.length }));
    sameIds(rec.ids(), pub.ids);
  });
});

describe('silent network cut on WebSocket (a relay that stops forwarding, closing nothing)', () => {
  it.each([
    ['API Gateway', 'WebSocketUrl'],
    ['/live on the tasks', 'LiveUrl'],
  ] as const)('%s: the client’s liveness deadline notices, it resumes with since, nothing lost', async (_name, key) => {
    const ch = `chat:z-${uid()}`;
    const target = stack.outputs[key];
    const r = await relay(target);
    const tickets = localTickets(stack.outputs.TicketUrl, 'pat', (t) => ({ ...t, wsUrl: `${r.via(target)}?ticket=${encodeURIComponent(t.ticket)}` }));
    // Short deadlines stand in for the defaults (20 s + 10 s, asserted in client-unit): the stack's HEARTBEAT_MS is 1000.
    const rec = track(record(nodeClient({ ticket: tickets, transports: ['ws'], pingMs: 1500, pongTimeoutMs: 1000 }), [ch]));
    await until(() => rec.client.state === 'open', 'open');
    const pub = startPublisher(stack.outputs.PublishUrl, ch, 40, 20);
    await until(() => pub.ids.length >= 10, '10 published');
    r.freeze();
    await pub.done;
    await until(() => rec.events.length >= pub.ids.length, 'every event', 30_000, () => ({ got: rec.events.length, want: pub.ids.length, errors: rec.errors }));
    sameIds(rec.ids(), pub.ids);
    expect(rec.errors).toContain('dead');
    expect(rec.opens).toEqual(['ws', 'ws']);
  });
});

describe('long poll on one ticket', () => {
  it('later polls ride the reconnect cookie of the first: one ticket for many answers; POST /revoke ends the session', async () => {
    const ch = `chat:q-${uid()}`;
    const tickets = localTickets(stack.outputs.TicketUrl, 'quinn');
    let signedOut = false;
    // After the revocation the app's sign-in is gone too: its ticket function refuses.
    const ticket = async (req: TicketRequest) => {
      if (signedOut) throw new RealtimeClientError('forbidden', 'signed out', 403);
      return tickets(req);
    };
    const rec = track(record(nodeClient({ ticket, transports: ['poll'], pollUrl: stack.outputs.PollUrl }), [ch]));
    await until(() => rec.client.state === 'open', 'open');
    const ids: string[] = [];
    // One event per answer: each publish waits for the one before to arrive.
    for (let i = 0; i < 6; i++) {
      ids.push(await publish(stack.outputs.PublishUrl, ch, { i }));
      await until(() => rec.events.length === i + 1, `event ${i}`, 20_000, () => rec.events);
    }
    sameIds(rec.ids(), ids);
    expect(tickets.calls).toHaveLength(1);
    signedOut = true;
    const revoked = await fetch(stack.outputs.TicketUrl.replace(/\/tickets$/, '/revoke'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sub: 'quinn' }) });
    expect(revoked.status).toBe(202);
    // The waiting poll is answered 401; the cookie no longer opens anything, so the client needs a new ticket, which is refused.
    await until(() => rec.client.state === 'closed', 'closed', 20_000, () => rec);
    expect(rec.errors).toEqual(['unauthorized', 'forbidden']);
    expect(tickets.calls).toHaveLength(1);
  });

  it('a poll with no event to wait for is open at once (the first poll does not wait)', async () => {
    const ch = `chat:o-${uid()}`;
    const rec = track(record(nodeClient({ ticket: localTickets(stack.outputs.TicketUrl, 'ola'), transports: ['poll'], pollUrl: stack.outputs.PollUrl }), [ch]));
    await until(() => rec.client.state === 'open', 'open');
    // Nothing was published: only the immediate first answer can have opened it.
    expect(rec.events).toEqual([]);
    const raw = await fetch(`${stack.outputs.PollUrl}?channels=${encodeURIComponent(`scores:${uid()}`)}&wait=0`);
    // A channel without any event: the connection cursor of one channel at position 0 (anchor 0, its field empty).
    expect(await raw.json()).toEqual({ events: [], cursor: 'p1.0.', resets: [] });
  });
});

describe('test kit', () => {
  it('startPublisher gives up on a 4xx (a mistake in the test) instead of retrying forever', async () => {
    const pub = startPublisher(stack.outputs.PublishUrl, 'no such channel!', 3, 0);
    await expect(pub.done).rejects.toThrow(/publish answered 400/);
  }, 10_000);
});
