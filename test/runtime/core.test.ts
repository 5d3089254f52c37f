import type Redis from 'ioredis';
import { maySubscribe, mayPublish, parseChannel, parseChannelList } from '../../core/channels';
import { ConfigError, DEFAULT_NAMESPACES, parseNamespaces } from '../../core/config';
import { RealtimeError } from '../../core/errors';
import { currentCursor, publish, replay } from '../../core/events';
import { Keys, sha256 } from '../../core/redis/keys';
import { issueTicket, redeemTicket } from '../../core/tickets';
import { connectRedis, coreConfig, eventually, TEST_NAMESPACES, uid } from '../support/harness';

const SERVER = { kind: 'server', principal: 'arn:aws:iam::1:role/backend' } as const;
const alice = { kind: 'user', sub: 'alice' } as const;
const bob = { kind: 'user', sub: 'bob' } as const;

let redis: Redis;
beforeAll(async () => {
  redis = await connectRedis();
});
afterAll(() => redis.disconnect());

describe('channels', () => {
  test.each([['scores:42'], ['chat:room-1'], ['user:auth0|abc'], ['chat:a.b_c=d@e']])('valid name %s: parses', (c) => {
    expect(parseChannel(c, DEFAULT_NAMESPACES).channel).toBe(c);
  });

  test.each([[''], ['nocolon'], ['Scores:1'], ['scores:'], [':x'], ['scores:a b'], ['scores:a,b'], ['scores:a"b'], [`scores:${'x'.repeat(129)}`], ['unknown:1']])(
    'invalid name %j: invalid_channel',
    (c) => {
      expect(() => parseChannel(c, DEFAULT_NAMESPACES)).toThrow(expect.objectContaining({ code: 'invalid_channel', status: 400 }));
    },
  );

  test('channel lists: sorted, deduplicated, capped', () => {
    expect(parseChannelList('scores:2,scores:1,scores:2', DEFAULT_NAMESPACES, 4).map((c) => c.channel)).toEqual(['scores:1', 'scores:2']);
    expect(() => parseChannelList(['scores:1', 'scores:2', 'scores:3'], DEFAULT_NAMESPACES, 2)).toThrow(expect.objectContaining({ code: 'too_many_channels' }));
    expect(() => parseChannelList([], DEFAULT_NAMESPACES, 2)).toThrow(expect.objectContaining({ code: 'invalid_channel' }));
    expect(() => parseChannelList([42], DEFAULT_NAMESPACES, 2)).toThrow(expect.objectContaining({ code: 'invalid_channel' }));
  });

  test('policies: public, authenticated, owner; publish server or authenticated', () => {
    const p = (c: string) => parseChannel(c, DEFAULT_NAMESPACES);
    expect(maySubscribe({ kind: 'anonymous' }, p('scores:1'))).toBe(true);
    expect(maySubscribe({ kind: 'anonymous' }, p('chat:1'))).toBe(false);
    expect(maySubscribe(alice, p('chat:1'))).toBe(true);
    expect(maySubscribe(alice, p('user:alice'))).toBe(true);
    expect(maySubscribe(bob, p('user:alice'))).toBe(false);
    expect(mayPublish(alice, p('scores:1'))).toBe(false);
    expect(mayPublish(alice, p('chat:1'))).toBe(true);
    expect(mayPublish(SERVER, p('user:alice'))).toBe(true);
    expect(mayPublish({ kind: 'anonymous' }, p('chat:1'))).toBe(false);
  });

  test('NAMESPACES_JSON: validated with one readable line', () => {
    expect(parseNamespaces(undefined)).toBe(DEFAULT_NAMESPACES);
    expect(parseNamespaces('{"feed":{"subscribe":"public"}}').feed).toEqual({ subscribe: 'public', publish: 'server', historySize: 1000, historyTtlSeconds: 86400 });
    expect(() => parseNamespaces('{')).toThrow(new ConfigError('NAMESPACES_JSON: not valid JSON'));
    expect(() => parseNamespaces('{"feed":{"subscribe":"everyone"}}')).toThrow(/NAMESPACES_JSON\.feed\.subscribe/);
    expect(() => parseNamespaces('{"Bad":{"subscribe":"public"}}')).toThrow(/NAMESPACES_JSON\.Bad/);
  });
});

describe('tickets', () => {
  const config = coreConfig();
  const deps = { redis: undefined as unknown as Redis, config };
  beforeAll(() => {
    deps.redis = redis;
  });

  test('issue: 256-bit random ticket, only its hash stored, with the TTL', async () => {
    const t = await issueTicket({ identity: alice, channels: ['chat:x', 'user:alice'] }, deps);
    expect(t.ticket).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(t.channels).toEqual(['chat:x', 'user:alice']);
    const key = new Keys('rt:').ticket(sha256(t.ticket));
    expect(await redis.exists(key)).toBe(1);
    expect(await redis.keys(`*${t.ticket}*`)).toEqual([]);
    const ttl = await redis.ttl(key);
    expect(ttl).toBeGreaterThan(25);
    expect(ttl).toBeLessThanOrEqual(30);
  });

  test('redeem: once, bound to the identity, channels and transport', async () => {
    const t = await issueTicket({ identity: alice, channels: ['chat:x'], transport: 'ws' }, deps);
    await expect(redeemTicket(t.ticket, 'ws', deps)).resolves.toEqual({
      sub: 'alice',
      channels: ['chat:x'],
      transport: 'ws',
      byBackend: false,
      issuedAt: expect.any(Number),
      epoch: expect.any(Number),
    });
    await expect(redeemTicket(t.ticket, 'ws', deps)).rejects.toMatchObject({ code: 'ticket_invalid', status: 401 });
  });

  test('redeem on the wrong transport: rejected and spent', async () => {
    const t = await issueTicket({ identity: alice, channels: ['chat:x'], transport: 'ws' }, deps);
    await expect(redeemTicket(t.ticket, 'sse', deps)).rejects.toMatchObject({ code: 'ticket_invalid' });
    await expect(redeemTicket(t.ticket, 'ws', deps)).rejects.toMatchObject({ code: 'ticket_invalid' });
  });

  test('concurrent redemption: exactly one of 50 wins', async () => {
    const t = await issueTicket({ identity: alice, channels: ['chat:x'] }, deps);
    const results = await Promise.allSettled(Array.from({ length: 50 }, () => redeemTicket(t.ticket, 'sse', deps)));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(results.filter((r) => r.status === 'rejected' && (r.reason as RealtimeError).code === 'ticket_invalid')).toHaveLength(49);
  });

  test('expiry: a ticket is gone after its TTL', async () => {
    const short = { redis, config: coreConfig({ ticketTtlSeconds: 1 }) };
    const t = await issueTicket({ identity: alice, channels: ['chat:x'] }, short);
    await new Promise((r) => setTimeout(r, 1500));
    await expect(redeemTicket(t.ticket, 'sse', short)).rejects.toMatchObject({ code: 'ticket_invalid' });
  });

  test('unknown and malformed tickets: ticket_invalid', async () => {
    await expect(redeemTicket('A'.repeat(43), 'sse', deps)).rejects.toMatchObject({ code: 'ticket_invalid' });
    await expect(redeemTicket('short', 'sse', deps)).rejects.toMatchObject({ code: 'ticket_invalid' });
    await expect(redeemTicket(undefined, 'sse', deps)).rejects.toMatchObject({ code: 'ticket_invalid' });
  });

  test('issue: another user\'s owner channel is refused; servers and anonymous get no ticket', async () => {
    await expect(issueTicket({ identity: bob, channels: ['user:alice'] }, deps)).rejects.toMatchObject({ code: 'channel_not_granted', status: 403 });
    await expect(issueTicket({ identity: SERVER, channels: ['chat:x'] }, deps)).rejects.toMatchObject({ code: 'unauthorized' });
    await expect(issueTicket({ identity: { kind: 'anonymous' }, channels: ['scores:1'] }, deps)).rejects.toMatchObject({ code: 'unauthorized' });
    await expect(issueTicket({ identity: alice, channels: ['chat:x'], transport: 'carrier-pigeon' }, deps)).rejects.toMatchObject({ code: 'bad_request' });
    await expect(issueTicket({ identity: alice, channels: 'chat:x,bad name' }, deps)).rejects.toMatchObject({ code: 'invalid_channel' });
  });
});

describe('publish and replay', () => {
  const config = coreConfig();
  const deps = { redis: undefined as unknown as Redis, config };
  beforeAll(() => {
    deps.redis = redis;
  });

  test('publish: appends to history and PUBLISHes the same envelope, id from Redis time', async () => {
    const channel = `chat:${uid()}`;
    const sub = await connectRedis();
    const got: string[] = [];
    const live = new Keys('rt:').live(channel);
    await sub.subscribe(live);
    sub.on('message', (_c, m) => got.push(m));
    const [sec, us] = await redis.time();
    const before = Number(sec) * 1_000_000 + Number(us);
    expect(await currentCursor([parseChannel(channel, TEST_NAMESPACES)], deps)).toEqual([0]);
    const r = await publish({ channel, type: 'message', data: { text: 'hi', n: 1 } }, SERVER, deps);
    expect(Number(r.id)).toBeGreaterThan(before);
    expect(await currentCursor([parseChannel(channel, TEST_NAMESPACES)], deps)).toEqual([Number(r.id)]);
    const hist = await redis.xrange(new Keys('rt:').history(channel), '-', '+');
    expect(hist).toHaveLength(1);
    const env = JSON.parse(hist[0][1][1]);
    expect(env).toEqual({ channel, id: r.id, type: 'message', data: { text: 'hi', n: 1 }, ts: expect.any(Number) });
    expect(Math.abs(env.ts - Date.now())).toBeLessThan(5000);
    // Exactly one PUBLISH, proved by order rather than by waiting: Redis delivers a channel's messages in order,
    // so once a marker published after it arrives, everything the publish sent has arrived before it.
    await redis.publish(live, 'marker');
    await eventually(() => got.includes('marker'), 5000, 'the marker');
    expect(got).toEqual([hist[0][1][1], 'marker']);
    sub.disconnect();
  });

  test('history: bounded to the namespace size, with the namespace TTL', async () => {
    const channel = `tiny:${uid()}`;
    for (let i = 0; i < 5; i++) await publish({ channel, type: 't', data: i }, SERVER, deps);
    const key = new Keys('rt:').history(channel);
    expect(await redis.xlen(key)).toBe(3);
    const ttl = await redis.ttl(key);
    expect(ttl).toBeGreaterThan(590);
    expect(ttl).toBeLessThanOrEqual(600);
  });

  test('idempotencyKey: a retry returns the first id and publishes nothing', async () => {
    const channel = `chat:${uid()}`;
    const a = await publish({ channel, type: 't', data: 1, idempotencyKey: 'order-1' }, SERVER, deps);
    const b = await publish({ channel, type: 't', data: 1, idempotencyKey: 'order-1' }, SERVER, deps);
    expect(b).toEqual({ id: a.id, channel, duplicate: true });
    expect(a.duplicate).toBe(false);
    expect(await redis.xlen(new Keys('rt:').history(channel))).toBe(1);
    const c = await publish({ channel, type: 't', data: 1, idempotencyKey: 'order-2' }, SERVER, deps);
    expect(c.id).not.toBe(a.id);
  });

  test('validation: payload size, type, data, idempotency key, channel, permission', async () => {
    const channel = `chat:${uid()}`;
    await expect(publish({ channel, type: 't', data: 'x'.repeat(33_000) }, SERVER, deps)).rejects.toMatchObject({ code: 'payload_too_large', status: 413 });
    await expect(publish({ channel, type: 't', data: 'x'.repeat(32_000) }, SERVER, deps)).resolves.toMatchObject({ duplicate: false });
    await expect(publish({ channel, type: 'has space', data: 1 }, SERVER, deps)).rejects.toMatchObject({ code: 'invalid_type' });
    await expect(publish({ channel, type: 'reset', data: 1 }, SERVER, deps)).rejects.toMatchObject({ code: 'invalid_type' });
    await expect(publish({ channel, type: 't', data: undefined }, SERVER, deps)).rejects.toMatchObject({ code: 'bad_request' });
    await expect(publish({ channel, type: 't', data: 1, idempotencyKey: '' }, SERVER, deps)).rejects.toMatchObject({ code: 'bad_request' });
    await expect(publish({ channel: 'nope', type: 't', data: 1 }, SERVER, deps)).rejects.toMatchObject({ code: 'invalid_channel' });
    await expect(publish({ channel: 'scores:1', type: 't', data: 1 }, alice, deps)).rejects.toMatchObject({ code: 'forbidden', status: 403 });
    await expect(publish({ channel: 'chat:1', type: 't', data: 1 }, { kind: 'anonymous' }, deps)).rejects.toMatchObject({ code: 'forbidden' });
    expect(await redis.xlen(new Keys('rt:').history(channel))).toBe(1);
  });

  test('replay: every channel after its own cursor, merged in id order', async () => {
    const a = parseChannel(`chat:${uid()}`, TEST_NAMESPACES);
    const b = parseChannel(`chat:${uid()}`, TEST_NAMESPACES);
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push((await publish({ channel: i % 2 ? b.channel : a.channel, type: 't', data: i }, SERVER, deps)).id);
    const r = await replay([a, b], [Number(ids[0]), Number(ids[1])], deps);
    expect(r.resets).toEqual([]);
    expect(r.events.map((e) => JSON.parse(e).id)).toEqual(ids.slice(2));
    expect(r.events.map((e) => JSON.parse(e).data)).toEqual([2, 3, 4, 5]);
    expect(r.positions).toEqual([Number(ids[4]), Number(ids[5])]);
    expect((await replay([a, b], r.positions, deps)).events).toEqual([]);
  });

  test('replay past trimmed history: reset for that channel only, never a silent gap', async () => {
    const tiny = parseChannel(`tiny:${uid()}`, TEST_NAMESPACES);
    const chat = parseChannel(`chat:${uid()}`, TEST_NAMESPACES);
    const first = await publish({ channel: tiny.channel, type: 't', data: 0 }, SERVER, deps);
    const c1 = await publish({ channel: chat.channel, type: 't', data: 'c' }, SERVER, deps);
    for (let i = 1; i <= 4; i++) await publish({ channel: tiny.channel, type: 't', data: i }, SERVER, deps);
    // chat at 0: nothing seen on it yet.
    const r = await replay([chat, tiny], [0, Number(first.id)], deps);
    expect(r.resets).toEqual([tiny.channel]);
    expect(r.events.map((e) => JSON.parse(e).id)).toEqual([c1.id]);
    // A cursor still inside the retained history replays without reset.
    const hist = await redis.xrange(new Keys('rt:').history(tiny.channel), '-', '+');
    const r2 = await replay([tiny], [Number(hist[0][0].split('-')[0])], deps);
    expect(r2.resets).toEqual([]);
    expect(r2.events).toHaveLength(2);
  });

  test('history disabled (size 0): a resume that missed events gets reset, one that missed none does not', async () => {
    const ch = parseChannel(`nohist:${uid()}`, TEST_NAMESPACES);
    const before = await currentCursor([ch], deps);
    const e = await publish({ channel: ch.channel, type: 't', data: 1 }, SERVER, deps);
    expect((await replay([ch], before, deps)).resets).toEqual([ch.channel]);
    expect((await replay([ch], [Number(e.id)], deps)).resets).toEqual([]);
  });

  test('a cursor from before Redis lost its data (the channel\'s epoch began again): reset', async () => {
    const prefix = `t${uid()}:`;
    const d = { redis, config: coreConfig({ keyPrefix: prefix }) };
    const ch = parseChannel(`chat:${uid()}`, TEST_NAMESPACES);
    const old = await publish({ channel: ch.channel, type: 't', data: 1 }, SERVER, d);
    const keys = await redis.keys(`${prefix}*`);
    await redis.del(...keys);
    const fresh = await publish({ channel: ch.channel, type: 't', data: 2 }, SERVER, d);
    expect(Number(fresh.id)).toBeGreaterThan(Number(old.id));
    const r = await replay([ch], [Number(old.id) - 1], d);
    expect(r.resets).toEqual([ch.channel]);
    // What was published after the loss is still delivered.
    expect(r.events.map((e) => JSON.parse(e).id)).toEqual([fresh.id]);
    expect(r.positions).toEqual([Number(fresh.id)]);
  });
});
