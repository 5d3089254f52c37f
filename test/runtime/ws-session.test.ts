import type Redis from 'ioredis';
import { getConnection } from '../../core/connections';
import { RealtimeError } from '../../core/errors';
import { publish } from '../../core/events';
import { Keys } from '../../core/redis/keys';
import { connectSession, handleFrame, subscribeFrom, type SendOutcome, type WsSessionDeps } from '../../core/ws-session';
import { connectRedis, coreConfig, uid } from '../support/harness';

/**
 * The WebSocket use-cases on their own: no API Gateway, no management API. The transport is an
 * in-memory `send` and `fanout`, as the Fargate tasks will give them; Redis is real.
 */

const config = coreConfig();
const keys = new Keys(config.keyPrefix);
const SERVER = { kind: 'server', principal: 'test' } as const;
let redis: Redis;
beforeAll(async () => {
  redis = await connectRedis();
});
afterAll(() => redis.disconnect());

/** A transport that records what each connection was sent, and answers `gone` for connections in `gone`. */
function transport(gone = new Set<string>()) {
  const sent = new Map<string, string[]>();
  const fanned: { channel: string; envelope: string }[] = [];
  const deps: WsSessionDeps = {
    redis,
    config,
    send: async (connectionId, frame): Promise<SendOutcome> => {
      if (gone.has(connectionId)) return 'gone';
      (sent.get(connectionId) ?? sent.set(connectionId, []).get(connectionId)!).push(frame);
      return 'delivered';
    },
    fanout: async (channel, envelope) => {
      fanned.push({ channel, envelope });
      return { delivered: 0 };
    },
  };
  const parsed = (id: string) => (sent.get(id) ?? []).map((f) => JSON.parse(f) as Record<string, unknown>);
  return { deps, sent, fanned, parsed };
}

const connect = (id: string, sub: string, channels: string[], epoch = 0) => connectSession(id, { sub, channels, byBackend: false, epoch }, { redis, config });

describe('subscribeFrom: what to send, in order', () => {
  test('since below the floor: the missed events after since, then subscribed at the floor', async () => {
    const ch = `chat:${uid()}`;
    const ids: string[] = [];
    for (const data of [1, 2, 3]) ids.push((await publish({ channel: ch, type: 'm', data }, SERVER, { redis, config })).id);
    const id = `c-${uid()}`;
    await connect(id, 'alice', [ch]);
    const out = (await subscribeFrom(id, ch, ids[0], { redis, config })).map((f) => JSON.parse(f) as Record<string, unknown>);
    expect(out.map((f) => f.data ?? f.type)).toEqual([2, 3, 'subscribed']);
    expect(out[2]).toEqual({ type: 'subscribed', channel: ch, cursor: ids[2] });
  });

  test('no since: only subscribed; a channel outside the ticket: channel_not_granted; an unknown connection: unauthorized', async () => {
    const ch = `chat:${uid()}`;
    const id = `c-${uid()}`;
    await connect(id, 'alice', [ch]);
    const out = await subscribeFrom(id, ch, undefined, { redis, config });
    expect(out).toHaveLength(1);
    expect(JSON.parse(out[0])).toMatchObject({ type: 'subscribed', channel: ch });
    await expect(subscribeFrom(id, `chat:${uid()}`, undefined, { redis, config })).rejects.toMatchObject({ code: 'channel_not_granted' });
    await expect(subscribeFrom(`nobody-${uid()}`, ch, undefined, { redis, config })).rejects.toMatchObject({ code: 'unauthorized' });
    await expect(subscribeFrom(id, ch, 'not-a-cursor', { redis, config })).rejects.toMatchObject({ code: 'invalid_cursor' });
  });

  test('a since ahead of the channel\'s position on a new subscription (a failover lost ids the client saw): reset, then subscribed at the channel\'s position; the channel\'s next id is above the since', async () => {
    const id = `c-${uid()}`;
    await connect(id, 'alice', []);
    // Public channels need no grant.
    const ch = `scores:${uid()}`;
    const last = (await publish({ channel: ch, type: 'm', data: 1 }, SERVER, { redis, config })).id;
    const ahead = String(Number(last) + 1000);
    const out = (await subscribeFrom(id, ch, ahead, { redis, config })).map((f) => JSON.parse(f) as { type: string; cursor?: string });
    expect(out).toEqual([{ type: 'reset', channel: ch, reason: 'history_unavailable' }, { type: 'subscribed', channel: ch, cursor: last }]);
    // The ids the client holds are never issued again on the channel (recorded lost in its slot).
    expect(Number((await publish({ channel: ch, type: 'm', data: 2 }, SERVER, { redis, config })).id)).toBeGreaterThan(Number(ahead));
    expect(await redis.exists(keys.lostRanges(ch))).toBe(1);
  });
});

describe('handleFrame: parse, run, send through the transport', () => {
  test('ping → pong; unsubscribe → unsubscribed; unknown action and bad JSON throw RealtimeError for the adapter to frame', async () => {
    const t = transport();
    const id = `c-${uid()}`;
    const ch = `chat:${uid()}`;
    await connect(id, 'alice', [ch]);
    await handleFrame(id, '{"action":"ping"}', t.deps);
    await handleFrame(id, JSON.stringify({ action: 'unsubscribe', channel: ch }), t.deps);
    expect(t.parsed(id)).toEqual([{ type: 'pong' }, { type: 'unsubscribed', channel: ch }]);
    expect((await getConnection(id, { redis, config }))?.subscriptions.has(ch)).toBe(false);
    await expect(handleFrame(id, '{"action":"shout"}', t.deps)).rejects.toBeInstanceOf(RealtimeError);
    await expect(handleFrame(id, '{', t.deps)).rejects.toMatchObject({ code: 'invalid_json' });
  });

  test('publish: the publisher gets `published` first, then the event goes to the fan-out once (a duplicate is not fanned out again)', async () => {
    const t = transport();
    const id = `c-${uid()}`;
    const ch = `chat:${uid()}`;
    await connect(id, 'alice', [ch]);
    const frame = JSON.stringify({ action: 'publish', channel: ch, type: 'msg', data: { text: 'hi' }, idempotencyKey: 'once' });
    await handleFrame(id, frame, t.deps);
    await handleFrame(id, frame, t.deps);
    const acks = t.parsed(id);
    expect(acks).toEqual([
      { type: 'published', id: expect.stringMatching(/^\d+$/), channel: ch },
      { type: 'published', id: acks[0].id, channel: ch },
    ]);
    expect(t.fanned).toHaveLength(1);
    expect(JSON.parse(t.fanned[0].envelope)).toMatchObject({ channel: ch, id: acks[0].id, type: 'msg', data: { text: 'hi' } });
  });

  test('a connection that is gone: sending stops at the first `gone`', async () => {
    const ch = `chat:${uid()}`;
    for (const data of [1, 2, 3]) await publish({ channel: ch, type: 'm', data }, SERVER, { redis, config });
    const id = `c-${uid()}`;
    await connect(id, 'alice', [ch]);
    const calls: string[] = [];
    const deps: WsSessionDeps = {
      redis,
      config,
      send: async (_id, frame) => {
        calls.push(frame);
        return 'gone';
      },
    };
    await handleFrame(id, JSON.stringify({ action: 'subscribe', channel: ch, since: '0' }), deps);
    expect(calls).toHaveLength(1);
  });
});

test('connectSession: a connection whose ticket predates a revocation is refused and left unregistered', async () => {
  const sub = `rev-${uid()}`;
  await redis.set(keys.revocation(sub), String(Date.now()));
  const id = `c-${uid()}`;
  await expect(connect(id, sub, [`chat:${uid()}`], 1)).rejects.toMatchObject({ code: 'unauthorized' });
  expect(await getConnection(id, { redis, config })).toBeNull();
});
