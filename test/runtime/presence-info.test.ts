import Redis from 'ioredis';
import { parseChannel } from '../../core/channels';
import type { Namespaces } from '../../core/config';
import { Keys } from '../../core/redis/keys';
import { RedisPresence } from '../../core/redis/presence';
import { startLocalStack, type LocalStack } from '../../local/stack';
import { eventually, RawStream, TEST_NAMESPACES, uid } from '../support/harness';
import { WsClient } from './ws-support';

/**
 * Issue 24, item 2: a member's `info` (e.g. a display name) comes from its ticket. A trusted backend attaches it to
 * `POST /backend/tickets` (a JSON object, at most 512 bytes of JSON); the ticket carries it to the connection, and the
 * presence join of that connection uses it, on every transport: SSE, long poll and `/live` on the tasks, API Gateway
 * (through the authorizer's context to `$connect`, and the connection's record for a later `subscribe`). Everything
 * goes through the local stack: the real ticket issuer, task, gateway emulator and handlers.
 */
const NAMESPACES: Namespaces = {
  ...TEST_NAMESPACES,
  room: { subscribe: 'authenticated', publish: 'authenticated', historySize: 100, historyTtlSeconds: 600, presence: 'members' },
  lobby: { subscribe: 'public', publish: 'server', historySize: 100, historyTtlSeconds: 600, presence: 'members' },
};
let stack: LocalStack;
let redis: Redis;
const prefix = `pi${uid()}:`;
const cleanup: (() => unknown)[] = [];
beforeAll(async () => {
  stack = await startLocalStack({ core: { keyPrefix: prefix, namespaces: NAMESPACES, userTicketsPerMinute: 0 } });
  redis = new Redis(stack.redisUrl);
});
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});
afterAll(async () => {
  redis.disconnect();
  await stack.close();
});

const backendTickets = () => stack.outputs.TicketUrl.replace(/\/tickets$/, '/backend/tickets');

/** `POST /backend/tickets` as the local trusted backend: the status and the answer. */
async function mint(body: Record<string, unknown>): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await fetch(backendTickets(), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
}

async function ticket(sub: string, channels: string[], transport: 'sse' | 'ws', info?: unknown): Promise<string> {
  const r = await mint({ sub, channels, transport, ...(info === undefined ? {} : { info }) });
  expect(r.status).toBe(201);
  return r.body.ticket as string;
}

const snapshot = (channel: string) => new RedisPresence(redis, { keyPrefix: prefix, namespaces: NAMESPACES }).snapshot(parseChannel(channel, NAMESPACES));
const memberOf = async (channel: string, sub: string) => (await snapshot(channel)).members.find((m) => m.sub === sub);

test("SSE and long poll: the backend's `info` is the member's, in the stream's `event: presence` snapshot", async () => {
  const room = `room:${uid()}`;
  const ann = new RawStream(`${stack.outputs.SseUrl}?channels=${room}&ticket=${await ticket('ann', [room], 'sse', { name: 'Ann', color: '#f00' })}`);
  cleanup.push(() => ann.close());
  await eventually(async () => (await memberOf(room, 'ann')) !== undefined, 10_000, 'ann present');
  const bob = new RawStream(`${stack.outputs.SseUrl}?channels=${room}&ticket=${await ticket('bob', [room], 'sse', { name: 'Bob' })}`);
  cleanup.push(() => bob.close());
  await bob.until((s) => s.events().some((e) => e.event === 'presence' && e.data.includes('"ann"')));
  const snap = JSON.parse(bob.events().find((e) => e.event === 'presence')!.data) as { members: unknown[] };
  expect(snap.members).toContainEqual({ sub: 'ann', info: { name: 'Ann', color: '#f00' }, connections: 1 });
  await eventually(async () => (await memberOf(room, 'bob')) !== undefined, 10_000, 'bob present');
  expect(await memberOf(room, 'bob')).toEqual({ sub: 'bob', info: { name: 'Bob' }, connections: 1 });

  // A long poll's session joins with its ticket's info too (a poll that waits holds its connection).
  const abort = new AbortController();
  const poll = fetch(`${stack.outputs.PollUrl}?channels=${room}&ticket=${await ticket('cat', [room], 'sse', { name: 'Cat' })}`, { signal: abort.signal }).catch(() => undefined);
  cleanup.push(() => abort.abort());
  await eventually(async () => (await memberOf(room, 'cat')) !== undefined, 10_000, 'cat present');
  expect(await memberOf(room, 'cat')).toMatchObject({ sub: 'cat', info: { name: 'Cat' } });
  void poll;
}, 30_000);

test("/live and API Gateway: the backend's `info` is the member's, in the `presence` action's snapshot; an API Gateway `subscribe` joins with it too", async () => {
  const room = `room:${uid()}`;
  const lobby = `lobby:${uid()}`;
  const live = new WsClient(`${stack.outputs.LiveUrl}?ticket=${await ticket('dan', [room], 'ws', { name: 'Dan' })}`);
  cleanup.push(() => live.ws.terminate());
  await live.opened;
  const gw = new WsClient(`${stack.outputs.WebSocketUrl}?ticket=${await ticket('eve', [room], 'ws', { name: 'Eve' })}`);
  cleanup.push(() => gw.ws.terminate());
  await gw.opened;
  await eventually(async () => (await snapshot(room)).members.length === 2, 10_000, 'dan and eve present');

  gw.send({ action: 'presence', channel: room });
  await gw.until((c) => c.frames.some((f) => f.type === 'presence'));
  expect((gw.frames.find((f) => f.type === 'presence') as { members: unknown[] }).members).toEqual([
    { sub: 'dan', info: { name: 'Dan' }, connections: 1 },
    { sub: 'eve', info: { name: 'Eve' }, connections: 1 },
  ]);
  live.send({ action: 'presence', channel: room });
  await live.until((c) => c.frames.some((f) => f.type === 'presence'));
  expect((live.frames.find((f) => f.type === 'presence') as { members: unknown[] }).members).toContainEqual({ sub: 'eve', info: { name: 'Eve' }, connections: 1 });

  // A channel subscribed to later (a public one: no grant needed) is joined with the same info.
  gw.send({ action: 'subscribe', channel: lobby });
  await gw.until((c) => c.frames.some((f) => f.type === 'subscribed'));
  await eventually(async () => (await memberOf(lobby, 'eve')) !== undefined, 10_000, 'eve in the lobby');
  expect(await memberOf(lobby, 'eve')).toEqual({ sub: 'eve', info: { name: 'Eve' }, connections: 1 });
}, 30_000);

test("a session opened by the reconnect cookie (every long poll after the first, a native EventSource reconnect) joins with the ticket's info", async () => {
  const room = `room:${uid()}`;
  const t = await ticket('gus', [room], 'sse', { name: 'Gus' });
  // The first poll redeems the ticket and sets the cookie.
  const first = await fetch(`${stack.outputs.PollUrl}?channels=${room}&ticket=${t}&wait=0`);
  expect(first.status).toBe(200);
  const cookie = first.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
  const { cursor } = (await first.json()) as { cursor: string };
  // Whatever that poll left (a member in grace, or nothing if it ended before its join ran), the grace ends: gus is gone.
  await eventually(async () => {
    await new RedisPresence(redis, { keyPrefix: prefix, namespaces: NAMESPACES }).settle(Date.now() + 60_000);
    return (await memberOf(room, 'gus')) === undefined;
  }, 10_000, 'gus gone');
  // The next poll comes on the cookie (with the spent ticket, as the SDK sends it): gus joins again, with his info.
  const abort = new AbortController();
  cleanup.push(() => abort.abort());
  const next = fetch(`${stack.outputs.PollUrl}?channels=${room}&ticket=${t}&cursor=${encodeURIComponent(cursor)}`, { headers: { cookie }, signal: abort.signal });
  await eventually(async () => (await memberOf(room, 'gus')) !== undefined, 10_000, 'gus back');
  // (Its poll answers with its own join, so it may be between two polls, in grace, by now: connections 0 or 1.)
  expect(await memberOf(room, 'gus')).toMatchObject({ sub: 'gus', info: { name: 'Gus' } });
  // Its join event (the channel's last) carries the info too.
  const joins = (await redis.xrange(new Keys(prefix).history(room), '-', '+')).map(([, f]) => JSON.parse(f[1]) as { type: string; data: unknown }).filter((e) => e.type === 'presence.join');
  expect(joins.at(-1)?.data).toEqual({ sub: 'gus', info: { name: 'Gus' } });
  void next.catch(() => undefined);
}, 30_000);

describe('refusals: a clear JSON error, no ticket minted', () => {
  const room = () => `room:${uid()}`;
  test.each([
    ['a string', 'Ann'],
    ['an array', [{ name: 'Ann' }]],
    ['a number', 42],
    ['null', null],
    ['past 512 bytes of JSON', { name: 'x'.repeat(520) }],
  ])('`info` that is %s: 400 invalid_info', async (_what, info) => {
    const tickets = () => redis.keys(`${prefix}tk:*`);
    const before = (await tickets()).length;
    const r = await mint({ sub: 'ann', channels: [room()], info });
    expect({ status: r.status, code: (r.body.error as { code?: string } | undefined)?.code }).toEqual({ status: 400, code: 'invalid_info' });
    expect((r.body.error as { message: string }).message).toMatch(/info/);
    expect((await tickets()).length).toBe(before);
  });

  test('`info` of exactly 512 bytes of JSON (multi-byte characters counted as UTF-8): 201', async () => {
    // {"n":"…"} is 8 bytes around the text; "é" is 2 bytes in UTF-8.
    const r = await mint({ sub: 'ann', channels: [room()], info: { n: 'é'.repeat(252) } });
    expect(r.status).toBe(201);
    const over = await mint({ sub: 'ann', channels: [room()], info: { n: `${'é'.repeat(252)}x` } });
    expect(over.status).toBe(400);
  });

  test('a user asking for their own ticket may not attach `info` (they could name themselves anything): 403 forbidden', async () => {
    const r = await fetch(stack.outputs.TicketUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-local-user': 'mallory' },
      body: JSON.stringify({ channels: [room()], info: { name: 'Admin' } }),
    });
    const body = (await r.json()) as { error: { code: string; message: string } };
    expect({ status: r.status, code: body.error.code }).toEqual({ status: 403, code: 'forbidden' });
    expect(body.error.message).toMatch(/backend/);
  });
});
