/**
 * Issue 26 item 2: `client.stats()` counts gaps by position. The SDK against the local stack on every transport, behind
 * test/support/event-proxy.ts, which drops chosen events deterministically (by the burst number in their data): each
 * dropped event is exactly one gap on its channel, whatever the transport; a `reset` (history that no longer covers the
 * cursor) is counted as a reset, not as a gap.
 */
import pino from 'pino';
import type { TicketAnswer } from '../../client/src/index';
import type { LocalStack } from '../../local/stack';
import { localTickets, nodeClient, publish, record, Relay, until, type Recorder } from '../support/client-kit';
import { proxyStack, type EventProxy, type ProxiedTransport, type StackProxies } from '../support/event-proxy';
import { TEST_NAMESPACES, uid } from '../support/harness';

process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';

let stack: LocalStack;
let tasks: EventProxy;
let gateway: EventProxy;
let proxies: StackProxies;
const clients: Recorder[] = [];
const relays: Relay[] = [];

beforeAll(async () => {
  const { startLocalStack } = await import('../../local/stack');
  stack = await startLocalStack({ logger: pino({ level: 'silent' }), env: { NAMESPACES_JSON: JSON.stringify(TEST_NAMESPACES), LOG_LEVEL: 'silent', RETRY_MS: '200', POLL_TIMEOUT_MS: '2000' } });
  proxies = await proxyStack(stack.outputs);
  ({ tasks, gateway } = proxies);
});
afterEach(async () => {
  for (const r of clients.splice(0)) r.client.close();
  for (const r of relays.splice(0)) await r.close();
  proxies.clear();
});
afterAll(async () => {
  await proxies?.close();
  await stack?.close();
});

/** A client on `transport` whose every connection passes the proxies. */
function viaProxy(transport: ProxiedTransport, channels: string[], since?: string): Recorder {
  const route = (t: TicketAnswer): TicketAnswer => ({
    ...t,
    sseUrl: t.sseUrl && tasks.via(t.sseUrl),
    wsUrl: transport === 'live' ? `${tasks.via(stack.outputs.LiveUrl)}?ticket=${t.ticket}` : t.wsUrl && gateway.via(t.wsUrl),
  });
  const client = nodeClient({ ticket: localTickets(stack.outputs.TicketUrl, 'gap-watcher', route), transports: [clientTransport(transport)] });
  const rec = record(client, channels, since);
  clients.push(rec);
  return rec;
}

const TRANSPORTS: ProxiedTransport[] = ['sse', 'poll', 'live', 'apigateway'];
const clientTransport = (t: ProxiedTransport) => (t === 'live' || t === 'apigateway' ? 'ws' : t);

describe.each(TRANSPORTS)('%s', (transport) => {
  test('an event dropped on the way is exactly one gap; two apart are two; the other channel of the connection has none', async () => {
    const a = `chat:g-${uid()}`;
    const b = `chat:h-${uid()}`;
    const rec = viaProxy(transport, [a, b]);
    await until(() => rec.client.state === 'open', 'open');
    (transport === 'apigateway' ? gateway : tasks).faults.set(transport, { drop: [3, 7, 8] });
    const ids: string[] = [];
    for (let seq = 1; seq <= 10; seq++) {
      ids.push(await publish(stack.outputs.PublishUrl, a, { seq }));
      await publish(stack.outputs.PublishUrl, b, { n: seq });
    }
    await until(() => rec.ids(a).length === 7 && rec.ids(b).length === 10, 'what passed the proxy', 20_000, () => rec.client.stats());
    // Ground truth: 3 dropped, 7 and 8 dropped together (one gap: the event after them names 8, the client holds 6).
    expect(rec.ids(a)).toEqual(ids.filter((_, i) => ![3, 7, 8].includes(i + 1)));
    expect(rec.client.stats()[a]).toMatchObject({ received: 7, gaps: 2, resets: 0, duplicates: 0 });
    expect(rec.client.stats()[b]).toMatchObject({ received: 10, gaps: 0, resets: 0 });
    // What the client saw of it: the event after the first hole names the dropped one.
    const after = rec.events.find((e) => e.id === ids[3])!;
    expect(after.prev).toBe(ids[2]);
  });

  test('a reset (history no longer covers the cursor) is a reset, not a gap', async () => {
    // The network between the client and the endpoint fails (a TCP relay) while the channel's history of three moves on.
    const target = transport === 'apigateway' ? stack.outputs.WebSocketUrl : stack.outputs.SseUrl;
    const relay = new Relay(Number(new URL(target).port));
    await relay.start();
    relays.push(relay);
    const route = (t: TicketAnswer): TicketAnswer => ({
      ...t,
      sseUrl: t.sseUrl && relay.via(t.sseUrl),
      wsUrl: transport === 'live' ? `${relay.via(stack.outputs.LiveUrl)}?ticket=${t.ticket}` : t.wsUrl && relay.via(t.wsUrl),
    });
    const c = `tiny:${uid()}`;
    const rec = record(nodeClient({ ticket: localTickets(stack.outputs.TicketUrl, 'gap-watcher', route), transports: [clientTransport(transport)] }), [c]);
    clients.push(rec);
    await until(() => rec.client.state === 'open', 'open');
    const ids = [await publish(stack.outputs.PublishUrl, c, { seq: 1 })];
    await until(() => rec.ids(c).length === 1, 'the first event');
    relay.cut();
    await until(() => rec.client.state !== 'open', 'the drop');
    // Five more into a history of three: the client's cursor (the first) is below what is kept.
    for (let seq = 2; seq <= 6; seq++) ids.push(await publish(stack.outputs.PublishUrl, c, { seq }));
    relay.restore();
    await until(() => rec.resets.length === 1 && rec.client.state === 'open', 'the reset', 20_000, () => rec.client.stats());
    ids.push(await publish(stack.outputs.PublishUrl, c, { seq: 7 }));
    await until(() => rec.ids(c).includes(ids[6]), 'the next event', 20_000, () => rec.client.stats());
    // The next event names the sixth, which the client never held: the reset said so; it is not counted again.
    expect(rec.events.at(-1)!.prev).toBe(ids[5]);
    expect(rec.client.stats()[c]).toMatchObject({ received: rec.ids(c).length, resets: 1, gaps: 0 });
  });
});

test('history() pages carry prev too (the history holds the envelopes as published): oldest first and newest first, each names the one before it', async () => {
  const c = `chat:hist-${uid()}`;
  const ids: string[] = [];
  for (let seq = 1; seq <= 5; seq++) ids.push(await publish(stack.outputs.PublishUrl, c, { seq }));
  const client = nodeClient({ ticket: localTickets(stack.outputs.TicketUrl, 'gap-watcher'), transports: ['sse'], sseUrl: stack.outputs.SseUrl });
  try {
    const page = await client.history(c);
    expect(page.events.map((e) => [e.prev, e.id])).toEqual(ids.map((id, i) => [i ? ids[i - 1] : '0', id]));
    const back = await client.history(c, { reverse: true, limit: 2 });
    expect(back.events.map((e) => [e.prev, e.id])).toEqual([
      [ids[3], ids[4]],
      [ids[2], ids[3]],
    ]);
  } finally {
    client.close();
  }
});
