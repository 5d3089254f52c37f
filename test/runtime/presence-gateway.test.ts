import Redis from 'ioredis';
import { parseChannel } from '../../core/channels';
import type { Namespaces } from '../../core/config';
import { GetConnectionCommand } from '@aws-sdk/client-apigatewaymanagementapi';
import { createManagementPoster } from '../../core/aws/management-client';
import { createManagementClient } from '../../core/aws/management-sdk';
import { getConnection } from '../../core/connections';
import { PRESENCE_GRACE_MS } from '../../core/presence';
import { GATEWAY_PRESENCE_LEASE_MS } from '../../core/presence-gateway';
import { RedisChannelBroker } from '../../core/redis/channel-broker';
import { PresenceKeys, RedisPresence } from '../../core/redis/presence';
import { createPresenceSweeper } from '../../lambda/handlers/presence-sweeper';
import { startLocalStack, type LocalStack } from '../../local/stack';
import { PRESENCE_SETTLE_MS } from '../../service/presence';
import { eventually, RawStream, TEST_NAMESPACES, uid } from '../support/harness';
import { WsClient } from './ws-support';
import { createClient, ticketFrom } from '../../client/src/index';
import { WebSocket as NodeWebSocket } from 'ws';

/**
 * Issue 24, items 2 and 3: API Gateway connections through the local emulator and the real handlers. A connection is
 * its own holder (`gw:{id}`): it joins the presence of the ticket's channels at `$connect` and of those it subscribes
 * to, answers the `presence` action, and leaves after the grace on `$disconnect`; its joins and leaves reach the
 * channel's other API Gateway connections live (the fan-out). Its lease is short and renewed by its frames; a dropped
 * `$disconnect` (the emulator's `kill`: no close frame, no event) is found by the presence sweeper once the lease
 * ended (GetConnection answers 410). Sweeps and settles run on a virtual clock.
 */
const NAMESPACES: Namespaces = {
  ...TEST_NAMESPACES,
  room: { subscribe: 'authenticated', publish: 'authenticated', historySize: 100, historyTtlSeconds: 600, presence: 'members' },
};
let stack: LocalStack;
let redis: Redis;
const prefix = `pg${uid()}:`;
beforeAll(async () => {
  stack = await startLocalStack({ core: { keyPrefix: prefix, namespaces: NAMESPACES } });
  redis = new Redis(stack.redisUrl);
});
afterAll(async () => {
  redis.disconnect();
  await stack.close();
});

async function connect(sub: string, channels: string[]): Promise<WsClient> {
  const res = await fetch(stack.outputs.TicketUrl, { method: 'POST', headers: { 'content-type': 'application/json', 'x-local-user': sub }, body: JSON.stringify({ channels, transport: 'ws' }) });
  const { wsUrl } = (await res.json()) as { wsUrl: string };
  const ws = new WsClient(wsUrl);
  await ws.opened;
  return ws;
}

const presence = () => new RedisPresence(redis, { keyPrefix: prefix, namespaces: NAMESPACES });
const members = async (channel: string) => (await presence().snapshot(parseChannel(channel, NAMESPACES))).members.map((m) => [m.sub, m.connections]);

/** The scheduled sweeper's period (EventBridge Scheduler `rate(1 minute)`, invoked within its minute: two runs are at most 2 minutes apart). */
const SWEEP_GAP_MS = 120_000;
/** DESIGN's bound for a lost `$disconnect`: lease + the next sweeper run + grace + the tasks' settle. */
const BOUND_MS = GATEWAY_PRESENCE_LEASE_MS + SWEEP_GAP_MS + PRESENCE_GRACE_MS + PRESENCE_SETTLE_MS;

/** A store that hands its events to the stack's fan-out, as the tasks' and the Lambdas' do. */
const delivering = async () => new RedisPresence(redis, { keyPrefix: prefix, namespaces: NAMESPACES }, { fanout: stack.lambda.sessionDeps(await stack.lambda.clients()).fanout });
const newConnection = async (before: Set<string>) => {
  await eventually(() => stack.ws.connectionIds().some((c) => !before.has(c)), 10_000, 'the new connection');
  return stack.ws.connectionIds().find((c) => !before.has(c))!;
};
/** Connects `sub` to `channels` and tells the emulator's id of its connection. */
async function connectWithId(sub: string, channels: string[]): Promise<{ client: WsClient; id: string }> {
  const before = new Set(stack.ws.connectionIds());
  const client = await connect(sub, channels);
  return { client, id: await newConnection(before) };
}
const leaseEnd = async (connectionId: string) => Number(await redis.zscore(new PresenceKeys(prefix).presenceGatewayLeases, `gw:${connectionId}`));
const sweepAt = (t: number) => createPresenceSweeper(stack.lambda, { now: () => t })({});
/** Closes the clients and waits for their `$disconnect`s to end their leases (so a later sweep sees only its own test's). */
async function closeAll(...clients: WsClient[]): Promise<void> {
  for (const c of clients) c.ws.close();
  await Promise.all(clients.map((c) => c.closed));
  await eventually(async () => (await redis.zcard(new PresenceKeys(prefix).presenceGatewayLeases)) === 0, 10_000, 'the $disconnects');
}

test('API Gateway: $connect joins the ticket’s channels, `presence` answers the snapshot, $disconnect leaves after the grace; the leave reaches the others live', async () => {
  const room = `room:${uid()}`;
  const ann = await connect('ann', [room]);
  const bob = await connect('bob', [room]);
  await eventually(async () => JSON.stringify(await members(room)) === JSON.stringify([['ann', 1], ['bob', 1]]), 10_000, 'ann and bob present');
  bob.ws.send(JSON.stringify({ action: 'presence', channel: room }));
  await bob.until((c) => c.frames.some((f) => f.type === 'presence'));
  const snap = bob.frames.find((f) => f.type === 'presence') as { channel: string; members: { sub: string }[]; position: string };
  expect(snap.channel).toBe(room);
  expect(snap.members.map((m) => m.sub)).toEqual(['ann', 'bob']);
  expect(Number(snap.position)).toBeGreaterThan(0);
  ann.ws.close();
  await eventually(async () => JSON.stringify(await members(room)) === JSON.stringify([['ann', 0], ['bob', 1]]), 10_000, 'ann in grace after $disconnect');
  await (await delivering()).settle(Date.now() + PRESENCE_GRACE_MS + 1);
  expect(await members(room)).toEqual([['bob', 1]]);
  // The leave is in the channel's stream above the snapshot's position, and bob got it live.
  const page = await new RedisChannelBroker(redis, { keyPrefix: prefix }).replay([{ channel: parseChannel(room, NAMESPACES), cursor: Number(snap.position) }], { maxEvents: 100, maxBytes: 1e6, entryBytes: 33_000 });
  if (page === 'invalid') throw new Error('invalid');
  expect(page.events.map((e) => JSON.parse(e) as { type: string; data: { sub: string } }).map((e) => [e.type, e.data.sub])).toEqual([['presence.leave', 'ann']]);
  await bob.until((c) => c.events(room).some((e) => e.type === 'presence.leave'));
  expect(bob.events(room).filter((e) => e.type === 'presence.leave').map((e) => e.data)).toEqual([{ sub: 'ann' }]);
  await closeAll(bob);
});

test('API Gateway: a connection subscribed to a members channel gets the joins of others live (API Gateway and SSE), in the channel’s order', async () => {
  const room = `room:${uid()}`;
  const ann = await connect('ann', [room]);
  await eventually(async () => JSON.stringify(await members(room)) === JSON.stringify([['ann', 1]]), 10_000, 'ann present');
  ann.send({ action: 'publish', channel: room, type: 'msg', data: 1 });
  await ann.until((c) => c.events(room).some((e) => e.type === 'msg'));
  // bob on API Gateway: his $connect's join.
  const bob = await connect('bob', [room]);
  await ann.until((c) => c.events(room).some((e) => e.type === 'presence.join' && (e.data as { sub: string }).sub === 'bob'), 10_000, 'bob’s join');
  ann.send({ action: 'publish', channel: room, type: 'msg', data: 2 });
  await ann.until((c) => c.events(room).filter((e) => e.type === 'msg').length === 2);
  // cat on a task's SSE stream: the task's join, through the fan-out queue.
  const ticket = await fetch(stack.outputs.TicketUrl, { method: 'POST', headers: { 'content-type': 'application/json', 'x-local-user': 'cat' }, body: JSON.stringify({ channels: [room], transport: 'sse' }) });
  const { sseUrl } = (await ticket.json()) as { sseUrl: string };
  const cat = new RawStream(sseUrl);
  await ann.until((c) => c.events(room).some((e) => e.type === 'presence.join' && (e.data as { sub: string }).sub === 'cat'), 10_000, 'cat’s join');
  // ann's own join may reach her or not (posted while her $connect runs, API Gateway answers 410): she is in her snapshot.
  const got = ann.events(room).map((e) => [e.type, e.type === 'msg' ? e.data : (e.data as { sub: string }).sub]).filter(([, who]) => who !== 'ann');
  expect(got).toEqual([['msg', 1], ['presence.join', 'bob'], ['msg', 2], ['presence.join', 'cat']]);
  // In the channel's order: the ids grow, and they are the channel's history after ann's subscription.
  const ids = ann.events(room).map((e) => Number(e.id));
  expect([...ids].sort((a, b) => a - b)).toEqual(ids);
  const page = await new RedisChannelBroker(redis, { keyPrefix: prefix }).replay([{ channel: parseChannel(room, NAMESPACES), cursor: ids[0] - 1 }], { maxEvents: 100, maxBytes: 1e6, entryBytes: 33_000 });
  if (page === 'invalid') throw new Error('invalid');
  expect(page.events.map((e) => Number((JSON.parse(e) as { id: string }).id))).toEqual(ids);
  cat.close();
  await closeAll(ann, bob);
});

test('API Gateway: a subscribe with `since` replays the presence events the connection missed, by the channel’s position', async () => {
  const room = `room:${uid()}`;
  const ann = await connect('ann', [room]);
  await eventually(async () => JSON.stringify(await members(room)) === JSON.stringify([['ann', 1]]), 10_000, 'ann present');
  ann.send({ action: 'publish', channel: room, type: 'msg', data: 1 });
  await ann.until((c) => c.events(room).some((e) => e.type === 'msg'));
  const since = ann.events(room).find((e) => e.type === 'msg')!.id;
  // ann leaves the channel; bob joins and leaves it while she is away.
  ann.send({ action: 'unsubscribe', channel: room });
  await ann.until((c) => c.frames.some((f) => f.type === 'unsubscribed'));
  const bob = await connect('bob', [room]);
  await eventually(async () => (await members(room)).some(([sub]) => sub === 'bob'), 10_000, 'bob present');
  bob.ws.close();
  await bob.closed;
  await eventually(async () => JSON.stringify(await members(room)) === JSON.stringify([['ann', 0], ['bob', 0]]), 10_000, 'bob in grace after $disconnect');
  await (await delivering()).settle(Date.now() + PRESENCE_GRACE_MS + 1);
  expect(await members(room)).toEqual([]);
  ann.send({ action: 'subscribe', channel: room, since });
  await ann.until((c) => c.events(room).filter((e) => e.type === 'presence.leave' && (e.data as { sub: string }).sub === 'bob').length > 0, 10_000, 'the replayed leave');
  const after = ann.events(room).filter((e) => Number(e.id) > Number(since) && (e.data as { sub?: string }).sub === 'bob').map((e) => e.type);
  expect(after).toEqual(['presence.join', 'presence.leave']);
  await closeAll(ann);
});

test('API Gateway: frames renew the presence lease; an open connection whose lease ended is asked about (GetConnection) and keeps its member', async () => {
  const room = `room:${uid()}`;
  const { client: dan, id } = await connectWithId('dan', [room]);
  await eventually(async () => (await leaseEnd(id)) > 0, 10_000, 'dan’s lease');
  const first = await leaseEnd(id);
  await eventually(async () => {
    dan.send({ action: 'ping' });
    await dan.until((c) => c.signals('pong').length > 0);
    return (await leaseEnd(id)) > first;
  }, 10_000, 'a frame renewing the lease');
  const renewed = await leaseEnd(id);
  // Its lease ended (a client that sends nothing): the sweeper asks API Gateway, which says it is open.
  stack.ws.setManagementThrottle({ methods: ['GET'] });
  const t = renewed + 1;
  expect(await sweepAt(t)).toEqual({ checked: 1, gone: 0, open: 1, failed: 0 });
  expect(stack.ws.managementCalls.map((c) => [c.method, c.connectionId])).toEqual([['GET', id]]);
  expect(await leaseEnd(id)).toBe(t + GATEWAY_PRESENCE_LEASE_MS);
  expect(await members(room)).toEqual([['dan', 1]]);
  stack.ws.setManagementThrottle(undefined);
  await closeAll(dan);
});

test('API Gateway: a dropped $disconnect: the member leaves within lease + sweeper gap + grace + settle of the connection’s last frame', async () => {
  const room = `room:${uid()}`;
  const { client: cat, id } = await connectWithId('cat', [room]);
  // eve watches, connected after cat: her lease ends after his.
  const watcher = await connect('eve', [room]);
  await eventually(async () => JSON.stringify(await members(room)) === JSON.stringify([['cat', 1], ['eve', 1]]), 10_000, 'cat present');
  const lastFrame = (await leaseEnd(id)) - GATEWAY_PRESENCE_LEASE_MS;
  expect(lastFrame).toBeGreaterThan(0);
  stack.ws.kill(id);
  await cat.closed;
  // Before the lease ends: nothing is asked, nothing changes (the tasks' sweeps never take a gateway connection).
  expect(await sweepAt(lastFrame + GATEWAY_PRESENCE_LEASE_MS - 1)).toEqual({ checked: 0, gone: 0, open: 0, failed: 0 });
  await stack.sse.presence!.tick();
  expect(await members(room)).toEqual([['cat', 1], ['eve', 1]]);
  // The first sweeper run after it, at the latest (two runs of the schedule are at most 2 minutes apart): 410, so the
  // connection ends as its $disconnect would have. (eve's lease ended too by then: she is open, and renewed.)
  const swept = lastFrame + GATEWAY_PRESENCE_LEASE_MS + SWEEP_GAP_MS;
  expect(await sweepAt(swept)).toEqual({ checked: 2, gone: 1, open: 1, failed: 0 });
  expect(await members(room)).toEqual([['cat', 0], ['eve', 1]]);
  expect(await getConnection(id, { redis, config: stack.lambda.core })).toBeNull();
  // The settle after the grace (the tasks' every second): cat leaves, within the bound, and eve hears it live.
  const left = swept + PRESENCE_GRACE_MS;
  await (await delivering()).settle(left);
  expect(await members(room)).toEqual([['eve', 1]]);
  expect(left + PRESENCE_SETTLE_MS - lastFrame).toBeLessThanOrEqual(BOUND_MS);
  await watcher.until((c) => c.events(room).some((e) => e.type === 'presence.leave'));
  expect(watcher.events(room).filter((e) => e.type === 'presence.leave').map((e) => e.data)).toEqual([{ sub: 'cat' }]);
  await closeAll(watcher);
});

test('the emulator answers GetConnection as API Gateway does: the SDK parses it, the lean poster reads it; 410 once the connection is gone', async () => {
  const room = `room:${uid()}`;
  const { client: fay, id } = await connectWithId('fay', [room]);
  const sdk = createManagementClient(stack.ws.managementEndpoint);
  const lean = createManagementPoster(stack.ws.managementEndpoint);
  try {
    const first = await sdk.send(new GetConnectionCommand({ ConnectionId: id }));
    expect(first.ConnectedAt).toBeInstanceOf(Date);
    expect(first.LastActiveAt).toBeInstanceOf(Date);
    expect(first.Identity?.SourceIp).toBe('127.0.0.1');
    // The wire shape (the API model's JSON names, ISO 8601), as the sweeper reads it; a client frame moves lastActiveAt.
    const info = await lean.getConnection(id);
    expect(Object.keys(info).sort()).toEqual(['connectedAt', 'identity', 'lastActiveAt']);
    expect(new Date(info.connectedAt).toISOString()).toBe(info.connectedAt);
    await eventually(async () => {
      fay.send({ action: 'ping' });
      await fay.until((c) => c.signals('pong').length > 0);
      return Date.parse((await lean.getConnection(id)).lastActiveAt) > Date.parse(info.lastActiveAt);
    }, 10_000, 'lastActiveAt moving with a frame');
    stack.ws.kill(id);
    await fay.closed;
    await expect(lean.getConnection(id)).rejects.toMatchObject({ name: 'GoneException', $metadata: { httpStatusCode: 410 } });
    await expect(sdk.send(new GetConnectionCommand({ ConnectionId: id }))).rejects.toMatchObject({ name: 'GoneException' });
  } finally {
    sdk.destroy();
    lean.destroy();
  }
  // Its lease is ended by the sweeper (410), as for any lost $disconnect.
  await sweepAt((await leaseEnd(id)) + 1);
  expect(await redis.zcard(new PresenceKeys(prefix).presenceGatewayLeases)).toBe(0);
});

test('the client SDK on API Gateway: a presence event posted after a later one (two producers: a task’s queue send is slow, a $connect’s is not) is not lost: the SDK sees by `prev` that one is missing and holds the later one until it comes, then applies both in order', async () => {
  const room = `room:${uid()}`;
  // The frames the SDK's socket received, to know that cat's join came before bob's.
  const frames: string[] = [];
  class Spy extends NodeWebSocket {
    constructor(url: string) {
      super(url);
      this.on('message', (d) => frames.push(String(d)));
    }
  }
  // gapWaitMs past the test: only bob's join can end the wait (no resume, whatever the load).
  const client = createClient({ WebSocket: Spy, storage: null, events: null, transports: ['ws'], gapWaitMs: 600_000, ticket: ticketFrom(stack.outputs.TicketUrl, { headers: { 'x-local-user': 'ann' } }) });
  const p = client.presence(room);
  const subs = () => p.members().map((m) => m.sub).sort().join(',');
  const joined = (sub: string) => frames.some((f) => f.includes('"presence.join"') && f.includes(`"sub":"${sub}"`));
  const holder = `task:${uid()}`;
  // A task's store whose fan-out (its SQS send) is held until released: its event reaches API Gateway connections late.
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const inline = stack.lambda.sessionDeps(await stack.lambda.clients()).fanout!;
  const slow = new RedisPresence(redis, { keyPrefix: prefix, namespaces: NAMESPACES }, { fanout: async (c, e) => (await gate, inline(c, e)) });
  let cat: WsClient | undefined;
  try {
    await eventually(() => p.synced && subs() === 'ann', 10_000, 'ann’s SDK synced with herself');
    await slow.lease(holder, Date.now() + 60_000);
    const bobJoined = slow.join(parseChannel(room, NAMESPACES), { holder, connection: `${holder}/1`, sub: 'bob' }, Date.now());
    await eventually(async () => (await members(room)).some(([sub]) => sub === 'bob'), 10_000, 'bob in the store');
    // cat's $connect joins after bob (a later id) and its join is posted at once: ann's socket gets it first.
    cat = await connect('cat', [room]);
    await eventually(() => joined('cat'), 10_000, 'cat’s join at ann’s socket');
    expect([joined('bob'), subs()]).toEqual([false, 'ann']);
    release();
    await bobJoined;
    await eventually(() => subs() === 'ann,bob,cat', 10_000, `ann’s SDK to show ann, bob and cat (it shows ${subs()})`);
    // Put in order on the connection, not by a resume.
    expect(client.stats()[room].reconnects).toBe(0);
  } finally {
    release();
    client.close();
    await slow.endHolder(holder, Date.now(), 0);
    if (cat) await closeAll(cat);
  }
});
