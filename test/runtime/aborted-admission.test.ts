import { once } from 'node:events';
import { connect } from 'node:net';
import type { Duplex } from 'node:stream';
import type Redis from 'ioredis';
import { parseChannel } from '../../core/channels';
import type { Namespaces } from '../../core/config';
import { Keys, sha256 } from '../../core/redis/keys';
import { RedisPresence } from '../../core/redis/presence';
import { coreConfig, eventually, RawStream, redisUrl, startService, TEST_NAMESPACES, ticketFor, uid, useRedis } from '../support/harness';
import { TcpProxy } from '../support/tcp-proxy';
import type { RealtimeServer } from '../../service/realtime-server';

/**
 * A client that goes away while its request is being admitted (its ticket redeemed in Redis): the task opened its
 * session after the socket had closed, and listened for the close only then, so the session held its connection (and its
 * presence member) until the poll's timeout, or for a stream until a write failed. Found by presence-random.test.ts (a
 * long poll closed right after it started stayed a member). The ticket's redemption is held at a TCP proxy in front of
 * Redis while the client aborts, so the order is certain.
 */
const NAMESPACES: Namespaces = {
  ...TEST_NAMESPACES,
  room: { subscribe: 'authenticated', publish: 'authenticated', historySize: 100, historyTtlSeconds: 600, presence: 'members' },
};
let redis: Redis;
const cleanup = useRedis((r) => (redis = r));

test.each([['poll'], ['events']])('/%s: a request aborted during its admission holds no session (its member goes into grace at once)', async (path) => {
  const proxy = new TcpProxy(Number(new URL(redisUrl()).port));
  const proxyUrl = await proxy.start();
  cleanup.push(() => proxy.close());
  const prefix = `aa${uid()}:`;
  // A long poll timeout: without the fix the poll would hold its member this long.
  const { service, base } = await startService({ REDIS_URL: proxyUrl, KEY_PREFIX: prefix, NAMESPACES_JSON: JSON.stringify(NAMESPACES), POLL_TIMEOUT_MS: '120000', HEARTBEAT_MS: '300000' }, { eventTimers: false });
  cleanup.push(() => service.close());
  const room = `room:${uid()}`;
  const config = coreConfig({ keyPrefix: prefix, namespaces: NAMESPACES });
  const ticket = await ticketFor(redis, 'ann', [room], 'sse', config);
  const held = proxy.trap((text) => /getdel/i.test(text));
  const abort = new AbortController();
  const request = fetch(`${base}/${path}?channels=${room}&ticket=${ticket}`, { signal: abort.signal, headers: path === 'events' ? { accept: 'text/event-stream' } : {} }).catch(() => undefined);
  await held;
  abort.abort();
  await request;
  // The task saw the socket close (it has no connection left) before the redemption goes on.
  await eventually(() => new Promise<boolean>((resolve) => service.server.getConnections((_e, n) => resolve(n === 0))), 10_000, 'the task to see the socket close');
  proxy.resume();
  await heldNothing({ service, base, prefix, ticket, room, config });
}, 30_000);

/**
 * After the held redemption of ann's `ticket` went on: it ran (the ticket is spent), and the rest of its admission was
 * sent on the task's Redis connection then, so a stream of bob's that starts now is admitted after it, its join queued
 * after any join of ann's. Then ann's session holds nothing: it never joined, or left at once (in grace now).
 */
async function heldNothing(a: { service: RealtimeServer; base: string; prefix: string; ticket: string; room: string; config: ReturnType<typeof coreConfig> }): Promise<void> {
  const { service, base, prefix, ticket, room, config } = a;
  await eventually(async () => (await redis.exists(new Keys(prefix).ticket(sha256(ticket)))) === 0, 10_000, 'the ticket spent');
  const bob = new RawStream(`${base}/events?channels=${room}&ticket=${await ticketFor(redis, 'bob', [room], 'sse', config)}`);
  cleanup.push(() => bob.close());
  const presence = new RedisPresence(redis, { keyPrefix: prefix, namespaces: NAMESPACES });
  const members = async () => (await presence.snapshot(parseChannel(room, NAMESPACES))).members.map((m) => [m.sub, m.connections]);
  await eventually(async () => (await members()).some(([sub]) => sub === 'bob'), 10_000, 'bob a member');
  await eventually(() => service.sockets === 0, 10_000, 'no socket session held');
  expect((await members()).filter(([sub, n]) => sub !== 'ann' || n !== 0)).toEqual([['bob', 1]]);
  expect(service.connections + service.polls + service.sockets).toBe(1);
}

test('/live: an upgrade whose client half-closed its socket during the admission holds no session (its member goes into grace at once)', async () => {
  // The client's FIN read before the 101: its socket is still writable, not readable; `ws` drops such a socket without
  // calling back, so the session opened by the admission was held for good (found by presence-random.test.ts: an SDK
  // giving up on a slow open). The ticket's redemption is held at the proxy while the client half-closes.
  const proxy = new TcpProxy(Number(new URL(redisUrl()).port));
  const proxyUrl = await proxy.start();
  cleanup.push(() => proxy.close());
  const prefix = `aa${uid()}:`;
  const { service, base } = await startService({ REDIS_URL: proxyUrl, KEY_PREFIX: prefix, NAMESPACES_JSON: JSON.stringify(NAMESPACES), HEARTBEAT_MS: '300000' }, { eventTimers: false });
  cleanup.push(() => service.close());
  const room = `room:${uid()}`;
  const config = coreConfig({ keyPrefix: prefix, namespaces: NAMESPACES });
  const ticket = await ticketFor(redis, 'ann', [room], 'ws', config);
  const theirs = new Promise<Duplex>((r) => service.server.prependOnceListener('upgrade', (_req, socket: Duplex) => r(socket)));
  const held = proxy.trap((text) => /getdel/i.test(text));
  const u = new URL(base);
  const client = connect(Number(u.port), u.hostname);
  client.on('error', () => undefined);
  cleanup.push(() => client.destroy());
  await once(client, 'connect');
  client.write(`GET /live?ticket=${ticket} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  await held;
  const socket = await theirs;
  const seen = new Promise<void>((r) => {
    if (socket.readableEnded || socket.destroyed) return r();
    socket.once('end', () => r());
    socket.once('close', () => r());
  });
  client.end();
  await seen;
  proxy.resume();
  await heldNothing({ service, base, prefix, ticket, room, config });
}, 30_000);
