import type Redis from 'ioredis';
import { parseChannel } from '../../core/channels';
import { publish, replay } from '../../core/events';
import { connectRedis, coreConfig, TEST_NAMESPACES, uid } from '../support/harness';

/**
 * A replay reads at most `limit` events from Redis (a request can no longer pull a whole history into
 * memory): pages continue from `position`, and read in turn they give every event once, in id order.
 */
let redis: Redis;
beforeAll(async () => {
  redis = await connectRedis();
});
afterAll(() => redis.disconnect());

const SERVER = { kind: 'server', principal: 'test' } as const;
const ids = (envs: string[]) => envs.map((e) => Number(JSON.parse(e).id));

test('pages of a two-channel replay: each at most the limit, "more" until the last, together every event once in order', async () => {
  const config = coreConfig();
  const deps = { redis, config };
  const a = parseChannel(`chat:${uid()}`, TEST_NAMESPACES);
  const b = parseChannel(`chat:${uid()}`, TEST_NAMESPACES);
  const first = await publish({ channel: a.channel, type: 't', data: 0 }, SERVER, deps);
  const published: number[] = [Number(first.id)];
  // Uneven interleaving: runs of one channel longer than a page.
  for (let i = 1; i < 40; i++) {
    const ch = i % 7 < 5 ? a : b;
    published.push(Number((await publish({ channel: ch.channel, type: 't', data: i }, SERVER, deps)).id));
  }
  const got: number[] = [];
  // Both channels at 0: nothing seen yet.
  let cursor = [0, 0];
  let pages = 0;
  for (;;) {
    const r = await replay([a, b], cursor, deps, 6);
    pages++;
    expect(r.events.length).toBeLessThanOrEqual(6);
    expect(r.resets).toEqual([]);
    got.push(...ids(r.events));
    if (!r.more) break;
    // Each channel continues after its last event in the page.
    expect(Math.max(...r.positions)).toBe(ids(r.events).at(-1));
    cursor = r.positions;
    expect(pages).toBeLessThan(20);
  }
  expect(got).toEqual(published);
  expect(pages).toBeGreaterThanOrEqual(7);
});

test('without a limit the whole retained history comes back with more: false', async () => {
  const deps = { redis, config: coreConfig() };
  const a = parseChannel(`chat:${uid()}`, TEST_NAMESPACES);
  const first = await publish({ channel: a.channel, type: 't', data: 0 }, SERVER, deps);
  for (let i = 1; i < 5; i++) await publish({ channel: a.channel, type: 't', data: i }, SERVER, deps);
  const r = await replay([a], [Number(first.id) - 1], deps);
  expect(r.events).toHaveLength(5);
  expect(r.more).toBe(false);
});
