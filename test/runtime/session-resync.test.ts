import type Redis from 'ioredis';
import pino from 'pino';
import { parseChannel } from '../../core/channels';
import { decodeCursor, encodeCursor } from '../../core/cursor';
import { envelopeChannel, envelopeSeq, publish } from '../../core/events';
import { ANONYMOUS } from '../../core/identity';
import { Keys } from '../../core/redis/keys';
import { RedisSubscriber } from '../../core/redis/subscriber';
import { serviceConfigFromEnv } from '../../service/config';
import { Hub, type LiveEvent } from '../../service/hub';
import { ServiceMetrics } from '../../service/metrics';
import { SessionEngine } from '../../service/session-engine';
import type { Ending, PageIds, Transport, TransportOwner } from '../../service/transport';
import { connectRedis, connectSubscriber, eventually, redisUrl, SESSION_SECRET, TEST_NAMESPACES, uid } from '../support/harness';

/**
 * A catch-up after the subscriber came back (`SessionEngine.catchUpAfterReconnect`) and a stream's own setup, or two
 * such catch-ups, on the same session: each reads from the session's positions, so one that runs while the other is
 * under way reads positions the other then moves past. Seen in CI (sse.test "resume › Last-Event-ID on a two-channel
 * stream", on the cluster): the stream's `id:` then named one channel below an event it had delivered, and the resume
 * from it sent that event again. The order is driven here, not timed: the subscriber reports `restored` (what the hub
 * hears from it after a lapse) just before the stream's setup starts.
 */

/** An SSE-like transport that records every event it is handed (replayed or live) with the connection's cursor after it. */
class CursorTransport implements Transport {
  readonly unidirectional = true;
  closed = false;
  owner?: TransportOwner;
  /** `[channel, seq, cursor after it]`, in the order written. */
  readonly written: [string, number, string][] = [];
  readonly readies: string[] = [];
  page(_resets: readonly string[], envelopes: readonly string[], ids?: PageIds): void {
    envelopes.forEach((env, i) => this.written.push([envelopeChannel(env), envelopeSeq(env), ids!.events[i]]));
  }
  nextPage(): Promise<boolean> {
    return Promise.resolve(!this.closed);
  }
  ready(cursor: string): void {
    this.readies.push(cursor);
  }
  event(event: LiveEvent, cursor?: string): void {
    this.written.push([event.channel, event.seq, cursor!]);
  }
  queuedBytes(): number {
    return 0;
  }
  heartbeat(): void {}
  end(ending: Ending): void {
    this.closed = true;
    this.readies.push(`end ${ending.reason}`);
  }
  gone(): void {
    this.closed = true;
  }
}

const SERVER = { kind: 'server', principal: 'test' } as const;

describe('a catch-up after a lapse while the stream is still being set up', () => {
  let redis: Redis;
  let subscriber: Redis;
  let engine: SessionEngine;
  let hub: Hub;
  const config = serviceConfigFromEnv({ REDIS_URL: redisUrl(), SESSION_SECRET, NAMESPACES_JSON: JSON.stringify(TEST_NAMESPACES), LOG_LEVEL: 'silent' });
  const deps = () => ({ redis, config: config.core });

  beforeAll(async () => {
    redis = await connectRedis();
    subscriber = await connectSubscriber();
    hub = new Hub(new RedisSubscriber(subscriber, new Keys(config.core.keyPrefix)));
    const metrics = new ServiceMetrics('test', () => ({ open: 0, deliveries: 0 }));
    engine = new SessionEngine({ config, redis, hub, metrics, log: pino({ level: 'silent' }), now: Date.now });
  });
  afterAll(() => {
    redis.disconnect();
    subscriber.disconnect();
  });

  test('two channels resumed from a cursor: every event once, none at or below the cursor, and each `id:` covers every event written before it', async () => {
    const [a, b] = [`scores:${uid()}`, `scores:${uid()}`].sort().map((c) => parseChannel(c, TEST_NAMESPACES));
    const pub = async (ch: typeof a, n: number) => Number((await publish({ channel: ch.channel, type: 'score', data: n }, SERVER, deps())).id);
    // The client saw a1 and b1; a2 and b2 were published after it left.
    const a1 = await pub(a, 1);
    const b1 = await pub(b, 2);
    const a2 = await pub(a, 3);
    const b2 = await pub(b, 4);
    const cursor = decodeCursor(encodeCursor([a1, b1]), 2);
    const t = new CursorTransport();
    const admitted = { channels: [a, b], cursor, names: [a.channel, b.channel], auth: { identity: ANONYMOUS }, now: Date.now() };
    const session = engine.open('stream', t, admitted);
    // The subscriber reports its subscriptions restored (a lapse ended) as the stream's setup begins.
    hub.onResubscribed!();
    await engine.start(session, admitted.channels, admitted.cursor);
    // The catch-up runs (or ran) too: its `ready` follows the setup's.
    await eventually(() => t.readies.length === 2, 5000, 'both readies');
    // Then live events, one per channel.
    const b3 = await pub(b, 5);
    const a3 = await pub(a, 6);
    await eventually(() => t.written.some(([, seq]) => seq === a3), 5000, 'live a3');

    const seqs = t.written.map(([, seq]) => seq);
    expect(seqs).toEqual([a2, b2, b3, a3]);
    // Each cursor names, for every channel, at least the last event of it written so far (what a resume from it skips).
    const last = new Map<string, number>();
    for (const [ch, seq, id] of t.written) {
      last.set(ch, seq);
      expect(decodeCursor(id, 2).positions).toEqual([last.get(a.channel) ?? a1, last.get(b.channel) ?? b1]);
    }
    expect(t.readies.map((r) => decodeCursor(r, 2).positions)).toEqual([
      [a2, b2],
      [a2, b2],
    ]);
    engine.release(session);
    expect(hub.channelCount).toBe(0);
  });
});
