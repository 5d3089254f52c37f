/**
 * The client through the failures of the platform, against a local stack of its own: a private
 * redis-server (restarted here), a WebSocket gateway with API Gateway's idle and age limits made
 * short, and an SSE task that drains (what SIGTERM or ECS's STOPPED starts) while another takes over.
 */
import pino from 'pino';
import { RedisServer } from '../../local/redis';
import type { LocalStack } from '../../local/stack';
import type { RealtimeServer } from '../../service/realtime-server';
import { localTickets, nodeClient, publish, record, sameIds, startPublisher, statsTruth, until, type Recorder } from '../support/client-kit';
import { startService, uid } from '../support/harness';
import { TcpProxy } from '../support/tcp-proxy';

process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';

/** The gateway's limits, scaled down from API Gateway's 10 minutes idle and 2 hours per connection. */
const IDLE_MS = 3000;
const MAX_CONNECTION_MS = 60_000;

let redis: RedisServer;
let stack: LocalStack;
const clients: Recorder[] = [];

beforeAll(async () => {
  redis = await RedisServer.start({ appendOnly: true });
  const { startLocalStack } = await import('../../local/stack');
  stack = await startLocalStack({
    logger: pino({ level: 'silent' }),
    redisUrl: redis.url,
    wsGateway: { idleTimeoutMs: IDLE_MS, maxConnectionMs: MAX_CONNECTION_MS },
    // A long poll waiting while the Redis subscriber reconnects is not woken by the catch-up (only
    // streams are): it answers at its timeout, so a short one keeps the poll case of the restart quick.
    env: { RETRY_MS: '200', HEARTBEAT_MS: '1000', POLL_TIMEOUT_MS: '5000', LOG_LEVEL: 'silent' },
  });
});
afterEach(() => {
  for (const r of clients.splice(0)) r.client.close();
});
afterAll(async () => {
  await stack?.close();
  await redis?.destroy();
});

/** Which of `want` (by index) `got` lacks: where a timeout stopped. */
const lostAt = (got: string[], want: string[]) => want.flatMap((id, i) => (got.includes(id) ? [] : [`${i}:${id}`]));

const track = (r: Recorder): Recorder => {
  clients.push(r);
  return r;
};

describe('API Gateway limits', () => {
  it('pings keep a quiet socket open past the idle limit', async () => {
    const ch = `chat:i-${uid()}`;
    const rec = track(record(nodeClient({ ticket: localTickets(stack.outputs.TicketUrl, 'amy'), transports: ['ws'], pingMs: 500 }), [ch]));
    await until(() => rec.client.state === 'open', 'open');
    // Events flow to the client but it sends nothing else: only its pings count as activity.
    const pub = startPublisher(stack.outputs.PublishUrl, ch, 3, IDLE_MS);
    await pub.done;
    await until(() => rec.events.length >= 3, 'events', 20_000, () => rec.events);
    sameIds(rec.ids(), pub.ids);
    expect(rec.opens).toEqual(['ws']);
  });

  it('without pings the gateway closes the idle socket; the client reconnects and resumes', async () => {
    const ch = `chat:j-${uid()}`;
    const rec = track(record(nodeClient({ ticket: localTickets(stack.outputs.TicketUrl, 'ben'), transports: ['ws'], pingMs: 3_600_000 }), [ch]));
    await until(() => rec.client.state === 'open', 'open');
    const pub = startPublisher(stack.outputs.PublishUrl, ch, 3, IDLE_MS);
    await pub.done;
    await until(() => rec.events.length >= 3 && rec.opens.length >= 2, 'events and a reconnect', 20_000, () => rec);
    sameIds(rec.ids(), pub.ids);
  });

  it('reconnects on its own before the connection age cap, without a state change and without loss', async () => {
    const ch = `chat:m-${uid()}`;
    const tickets = localTickets(stack.outputs.TicketUrl, 'cat');
    const rec = track(record(nodeClient({ ticket: tickets, transports: ['ws'], pingMs: 500, maxConnectionMs: 1500 }), [ch]));
    await until(() => rec.client.state === 'open', 'open');
    const pub = startPublisher(stack.outputs.PublishUrl, ch, 60, 50);
    await until(() => tickets.calls.length >= 3, 'two proactive reconnects', 30_000, () => tickets.calls.length);
    await pub.done;
    await until(() => rec.events.length >= pub.ids.length, 'every event', 30_000, () => ({ got: rec.events.length, want: pub.ids.length }));
    sameIds(rec.ids(), pub.ids);
    expect(rec.states).toEqual(['connecting', 'open']);
    // No state change, but the client counts each proactive reconnect (one ticket per connection).
    expect(rec.client.stats()[ch]).toMatchObject({ received: pub.ids.length, resets: 0, reconnects: tickets.calls.length - 1, switches: 0 });
  });
});

describe('Redis restart', () => {
  it.each(['ws', 'sse', 'poll'] as const)('%s: every event accepted before, during and after the restart arrives once', async (transport) => {
    const ch = `chat:x-${uid()}`;
    const rec = track(record(nodeClient({ ticket: localTickets(stack.outputs.TicketUrl, 'dan'), transports: [transport] }), [ch]));
    await until(() => rec.client.state === 'open', 'open');
    const pub = startPublisher(stack.outputs.PublishUrl, ch, 40, 25);
    await until(() => pub.ids.length >= 10, '10 published');
    await redis.stop();
    // Down until the publisher met the outage (a publish attempt failed), however slow the machine.
    const before = pub.attempts - pub.ids.length;
    await until(() => pub.attempts - pub.ids.length > before, 'a publish refused while Redis is down');
    await redis.restart();
    await pub.done;
    await until(() => rec.events.length >= pub.ids.length, 'every event', 45_000, () => ({ got: rec.events.length, want: pub.ids.length, lost: lostAt(rec.ids(), pub.ids), states: rec.states }));
    sameIds(rec.ids(), pub.ids);
    // A reset may come (the server could not prove its history covered a cursor across the restart:
    // seen on long polls now and then); it never replaces an event: every one still arrived once.
    expect(rec.resets.filter((c) => c !== ch)).toEqual([]);
    expect(rec.client.stats()[ch]).toMatchObject({ ...statsTruth(rec, ch), received: pub.ids.length });
  }, 60_000);
});

describe('Redis restart at a chosen step of a publish (ws)', () => {
  // A stack of its own whose every Redis connection passes a proxy: the proxy names the step (the
  // command the publish path is about to send) at which Redis goes away, instead of load deciding it.
  let own: RedisServer;
  let proxy: TcpProxy;
  let s: LocalStack;
  beforeAll(async () => {
    own = await RedisServer.start({ appendOnly: true });
    proxy = new TcpProxy(own.port);
    const url = await proxy.start();
    const { startLocalStack } = await import('../../local/stack');
    s = await startLocalStack({ logger: pino({ level: 'silent' }), redisUrl: url, env: { RETRY_MS: '200', HEARTBEAT_MS: '1000', LOG_LEVEL: 'silent' } });
  });
  afterAll(async () => {
    await s?.close();
    await proxy?.close();
    await own?.destroy();
  });

  it.each([
    ['SCARD', 'after the event is stored, before its fan-out counts the subscribers'],
    ['SSCAN', 'while its fan-out lists the subscribers'],
  ])('Redis restarts %s (%s): the event still reaches the WebSocket client, once and in order', async (command) => {
    const ch = `chat:r-${uid()}`;
    const rec = track(record(nodeClient({ ticket: localTickets(s.outputs.TicketUrl, 'fay'), transports: ['ws'] }), [ch]));
    await until(() => rec.client.state === 'open', 'open');
    const first = await publish(s.outputs.PublishUrl, ch, { i: 'first' });
    await until(() => rec.ids().includes(first), 'the first event');
    const trapped = proxy.trap((text) => text.toUpperCase().includes(command) && text.includes(ch));
    const pub = startPublisher(s.outputs.PublishUrl, ch, 2, 0);
    await trapped;
    // The command never reaches Redis: every connection drops and reconnects are refused, then the
    // server itself restarts (its data kept), and Redis comes back once that publish was answered.
    proxy.cut();
    await own.stop();
    await until(() => pub.attempts >= 1, 'the answer to the publish whose fan-out met the outage');
    await own.restart();
    proxy.resume();
    proxy.restore();
    await pub.done;
    // The last event is fanned out after Redis is back; anything before it was due first.
    await until(() => rec.ids().includes(pub.ids[1]), 'the event published after the restart', 30_000, () => ({ got: rec.ids(), want: [first, ...pub.ids] }));
    sameIds(rec.ids(), [first, ...pub.ids]);
    expect(rec.resets).toEqual([]);
  }, 60_000);
});

describe('SSE task drain', () => {
  let other: RealtimeServer | undefined;
  afterAll(async () => {
    await other?.close();
  });

  it('the task drains (SIGTERM / ECS STOPPED): streams are told to reconnect and resume on another task, 0 lost, 0 duplicates', async () => {
    const b = await startService({ REDIS_URL: redis.url, RETRY_MS: '200', HEARTBEAT_MS: '1000' });
    other = b.service;
    const ch = `chat:z-${uid()}`;
    // The load balancer: task A until it drains, then task B.
    let target = new URL(stack.outputs.SseUrl).origin;
    const tickets = localTickets(stack.outputs.TicketUrl, 'eve', (t) => ({ ...t, sseUrl: `${target}/events?${t.sseUrl!.split('?')[1]}` }));
    const rec = track(record(nodeClient({ ticket: tickets, transports: ['sse'] }), [ch]));
    await until(() => rec.client.state === 'open', 'open');
    const pub = startPublisher(stack.outputs.PublishUrl, ch, 60, 20);
    await until(() => pub.ids.length >= 15, '15 published');
    target = b.base;
    const drained = stack.sse.drain(2000);
    await pub.done;
    await drained;
    await until(() => rec.events.length >= pub.ids.length, 'every event', 30_000, () => ({ got: rec.events.length, want: pub.ids.length }));
    sameIds(rec.ids(), pub.ids);
    expect(rec.opens.length).toBeGreaterThanOrEqual(2);
    expect(rec.client.stats()[ch]).toMatchObject({ ...statsTruth(rec, ch), received: pub.ids.length });
  });
});
