import Redis from 'ioredis';
import { parseChannel, type ParsedChannel } from '../../core/channels';
import type { Namespaces } from '../../core/config';
import { preparePublish } from '../../core/events';
import { RedisChannelBroker } from '../../core/redis/channel-broker';
import { Keys } from '../../core/redis/keys';
import { envelopeBytes } from '../../core/redis/memory';
import { connectRedis, coreConfig, TEST_NAMESPACES, uid } from '../support/harness';

/**
 * Issue 26 item 2 (gaps by position): every envelope names its channel's previous event (`prev`), so a client can
 * count the events it missed between two it received. Ids are Redis time per channel, not a count: `prev` is what
 * tells one event from the next. The publish script writes it; history and replay carry it because they hold the same
 * bytes.
 */
const NAMESPACES: Namespaces = { ...TEST_NAMESPACES, brief: { subscribe: 'public', publish: 'server', historySize: 3, historyTtlSeconds: 60 } };
const SERVER = { kind: 'server', principal: 'arn:aws:iam::1:role/backend' } as const;
const ch = (name: string): ParsedChannel => parseChannel(name, NAMESPACES);
type Env = { channel: string; id: string; type: string; data: unknown; ts: number; prev?: string };

let redis: Redis;
beforeAll(async () => {
  redis = await connectRedis();
});
afterAll(() => redis.disconnect());

describe('prev', () => {
  test("a channel's first event has prev \"0\"; each next one the id before it on the same channel, whatever other channels publish; an idempotent repeat adds nothing", async () => {
    const keys = new Keys(`e${uid()}:`);
    const broker = new RedisChannelBroker(redis, { keyPrefix: keys.prefix });
    const config = coreConfig({ namespaces: NAMESPACES });
    const pub = async (c: ParsedChannel, data: unknown, idempotencyKey?: string): Promise<Env | string> => {
      const { head, tail } = preparePublish({ channel: c.channel, type: 't', data, idempotencyKey }, SERVER, config);
      const r = await broker.publish({ channel: c, head, tail, idempotency: idempotencyKey ? { principal: 'test', key: idempotencyKey, eventHash: 'h' } : undefined });
      if (r.kind === 'duplicate') return r.id;
      if (r.kind !== 'published') throw new Error(r.kind);
      return JSON.parse(r.envelope!) as Env;
    };
    const a = ch(`brief:${uid()}`);
    const b = ch(`brief:${uid()}`);
    const a1 = (await pub(a, 1)) as Env;
    const b1 = (await pub(b, 1)) as Env;
    const a2 = (await pub(a, 2, 'k')) as Env;
    expect(await pub(a, 2, 'k')).toBe(a2.id);
    const b2 = (await pub(b, 2)) as Env;
    const a3 = (await pub(a, 3)) as Env;
    expect([a1.prev, a2.prev, a3.prev]).toEqual(['0', a1.id, a2.id]);
    expect([b1.prev, b2.prev]).toEqual(['0', b1.id]);
    // The envelope keeps its fields and order; prev comes last.
    expect(Object.keys(a3)).toEqual(['channel', 'id', 'type', 'data', 'ts', 'prev']);
    // The history holds the same bytes: a replay carries prev. A trimmed history does not change what the next event names.
    for (let i = 4; i <= 6; i++) await pub(a, i);
    const history = await redis.xrange(keys.history(a.channel), '-', '+');
    const held = history.map(([, f]) => JSON.parse(f[1]) as Env);
    expect(held).toHaveLength(3);
    for (let i = 1; i < held.length; i++) expect(held[i].prev).toBe(held[i - 1].id);
  });
});

test('the memory and cost estimate counts prev: an envelope of 16-digit ids is as long as envelopeBytes says', async () => {
  const keys = new Keys(`e${uid()}:`);
  const broker = new RedisChannelBroker(redis, { keyPrefix: keys.prefix });
  const c = ch(`brief:${uid()}`);
  const config = coreConfig({ namespaces: NAMESPACES });
  let env = '';
  for (let i = 0; i < 2; i++) {
    const { head, tail } = preparePublish({ channel: c.channel, type: 'message', data: { text: 'hello' } }, SERVER, config);
    const r = await broker.publish({ channel: c, head, tail });
    if (r.kind !== 'published') throw new Error(r.kind);
    env = r.envelope!;
  }
  expect(Buffer.byteLength(env)).toBe(envelopeBytes(c.channel.length, 'message'.length, JSON.stringify({ text: 'hello' }).length));
});
