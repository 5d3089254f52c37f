import type Redis from 'ioredis';
import { parseChannel } from '../../core/channels';
import { decodeCursor } from '../../core/cursor';
import { currentCursor, publish } from '../../core/events';
import { Keys } from '../../core/redis/keys';
import { createRedis, waitReady } from '../../core/redis/client';
import { redeemTicket } from '../../core/tickets';
import { Hub, type LiveEvent } from '../../service/hub';
import { connectRedis, coreConfig, eventually, RawStream, startService, TEST_NAMESPACES, ticketFor, uid } from '../support/harness';
import { RedisSubscriber } from '../../core/redis/subscriber';

/**
 * The connect path's round trips: a ticket's redemption reads the user's revocation epoch and its
 * channels' positions in the same round trip, and a stream without a cursor on channels the task is
 * already subscribed to goes live at those positions (service/hub.ts `mark`/`addAt`) with no further
 * round trip, unless anything could have been missed since the mark.
 */

const SERVER = { kind: 'server', principal: 'test' } as const;
const config = coreConfig();

class Recorder {
  readonly seqs: number[] = [];
  onEvent(e: LiveEvent): void {
    this.seqs.push(e.seq);
  }
}

describe('redemption reads the position in the same step', () => {
  let redis: Redis;
  beforeAll(async () => {
    redis = await connectRedis();
  });
  afterAll(() => redis.disconnect());

  test('an SSE grant carries the position of each of its channels at redemption (its own last id; 0 for one without events)', async () => {
    const a = `chat:${uid()}`;
    const b = `chat:${uid()}`;
    const quiet = `chat:${uid()}`;
    const pa = await publish({ channel: a, type: 'x', data: 1 }, SERVER, { redis, config });
    const pb = await publish({ channel: b, type: 'x', data: 1 }, SERVER, { redis, config });
    // a's position is below b's: one number for both would be wrong for one of them.
    expect(Number(pa.id)).toBeLessThan(Number(pb.id));
    const grant = await redeemTicket(await ticketFor(redis, 'pos', [b, quiet, a]), 'sse', { redis, config });
    expect(grant.positions).toEqual(new Map([[a, Number(pa.id)], [b, Number(pb.id)], [quiet, 0]]));
    // A WebSocket ticket's redemption reads no positions (its subscriptions read their own floors).
    const ws = await redeemTicket(await ticketFor(redis, 'pos', [a], 'ws'), 'ws', { redis, config });
    expect(ws.positions).toBeUndefined();
  });
});

describe('hub: mark and addAt', () => {
  let redis: Redis;
  let subscriber: Redis;
  let hub: Hub;
  beforeAll(async () => {
    redis = await connectRedis();
    subscriber = createRedis({ url: config.redisUrl, name: 'test-sub', failFast: false });
    await waitReady(subscriber);
    hub = new Hub(new RedisSubscriber(subscriber, new Keys(config.keyPrefix)));
  });
  afterAll(() => {
    subscriber.disconnect();
    redis.disconnect();
  });

  test('no mark for a channel not subscribed yet', async () => {
    expect(hub.mark([`chat:${uid()}`])).toBeUndefined();
  });

  test('nothing arrived since the mark: added at the position, later events delivered', async () => {
    const ch = `chat:${uid()}`;
    const first = new Recorder();
    await hub.add([ch], first);
    const mark = hub.mark([ch])!;
    expect(mark).toBeDefined();
    const position = await currentCursor([parseChannel(ch, TEST_NAMESPACES)], { redis, config });
    const second = new Recorder();
    expect(hub.addAt([ch], second, mark, position)).toBe(true);
    const p = await publish({ channel: ch, type: 'x', data: 1 }, SERVER, { redis, config });
    await eventually(() => second.seqs.length === 1, 5000, 'the event');
    expect(second.seqs).toEqual([Number(p.id)]);
    hub.remove([ch], first);
    hub.remove([ch], second);
  });

  test('an event above the position arrived since the mark: refused (the caller reads the position again)', async () => {
    const ch = `chat:${uid()}`;
    const first = new Recorder();
    await hub.add([ch], first);
    const mark = hub.mark([ch])!;
    const position = await currentCursor([parseChannel(ch, TEST_NAMESPACES)], { redis, config });
    await publish({ channel: ch, type: 'x', data: 1 }, SERVER, { redis, config });
    await eventually(() => first.seqs.length === 1, 5000, 'the event at the hub');
    const second = new Recorder();
    expect(hub.addAt([ch], second, mark, position)).toBe(false);
    hub.remove([ch], first);
  });

  test('a subscription lapsed since the mark (a channel unsubscribed): refused', async () => {
    const ch = `chat:${uid()}`;
    const other = `chat:${uid()}`;
    const first = new Recorder();
    await hub.add([ch, other], first);
    const mark = hub.mark([ch])!;
    const position = await currentCursor([parseChannel(ch, TEST_NAMESPACES)], { redis, config });
    hub.remove([other], first);
    expect(hub.addAt([ch], new Recorder(), mark, position)).toBe(false);
    hub.remove([ch], first);
  });
});

describe('a stream joining a subscribed channel', () => {
  test('goes live at the redemption position and misses nothing published around its connect', async () => {
    const redis = await connectRedis();
    const { service, base } = await startService();
    try {
      const ch = `chat:${uid()}`;
      const a = new RawStream(`${base}/events?channels=${ch}&ticket=${await ticketFor(redis, 'a', [ch])}`);
      await a.until((x) => x.events().some((e) => e.event === 'ready'));
      // Publish continuously while the second stream connects: every event after its ready cursor reaches it.
      let publishing = true;
      const ids: number[] = [];
      const loop = (async () => {
        while (publishing) ids.push(Number((await publish({ channel: ch, type: 'x', data: 1 }, SERVER, { redis, config: service.config.core })).id));
      })();
      const b = new RawStream(`${base}/events?channels=${ch}&ticket=${await ticketFor(redis, 'b', [ch])}`);
      await b.until((x) => x.events().some((e) => e.event === 'ready'));
      await new Promise((r) => setTimeout(r, 100));
      publishing = false;
      await loop;
      const last = ids[ids.length - 1];
      await b.until((x) => x.events().some((e) => e.id === String(last)));
      const evs = b.events();
      const [cursor] = decodeCursor(evs.find((e) => e.event === 'ready')!.cursor, 1).positions;
      const got = evs.filter((e) => e.event === 'x').map((e) => Number(e.id));
      expect(got).toEqual(ids.filter((id) => id > cursor));
      a.close();
      b.close();
    } finally {
      await service.close();
      redis.disconnect();
    }
  });
});
