import type Redis from 'ioredis';
import type { Command } from 'ioredis';
import { createRedis, waitReady } from '../../core/redis/client';
import { Keys, sha256 } from '../../core/redis/keys';
import { GETDEL_ALL, GetdelBatch } from '../../service/ticket-batch';
import type { RealtimeServer } from '../../service/realtime-server';
import { connectRedis, coreConfig, RawStream, redisUrl, startService, ticketFor, uid } from '../support/harness';

/**
 * A burst's ticket redemptions in one write (service/ticket-batch.ts, TICKET_BATCH_MS): real Redis, the commands
 * watched as the client sends them. The window's clock is held still, so which redemptions share a run does not depend
 * on how fast this machine runs the test. One Redis node (a task on a cluster does not batch: a run's keys may hash to
 * any slot; the cluster suite's concurrent connects would fail with CROSSSLOT if it did).
 */

/** What `redis` sends: `getdel` with its key, or `getdel_all` (the batch's script, by EVALSHA or EVAL) with its keys. */
function watch(redis: Redis): { name: string; keys: string[] }[] {
  const seen: { name: string; keys: string[] }[] = [];
  const send = redis.sendCommand.bind(redis);
  redis.sendCommand = ((cmd: Command, stream?: unknown) => {
    const args = cmd.args.map(String);
    if (cmd.name === 'getdel') seen.push({ name: 'getdel', keys: [args[0]] });
    const isRun = (cmd.name === 'evalsha' && args[0] === GETDEL_ALL.sha) || (cmd.name === 'eval' && args[0] === GETDEL_ALL.source);
    // An EVAL after its EVALSHA met NOSCRIPT is the same run.
    if (isRun && !(cmd.name === 'eval' && seen.at(-1)?.name === 'getdel_all')) seen.push({ name: 'getdel_all', keys: args.slice(2, 2 + Number(args[1])) });
    return (send as (c: Command, s?: unknown) => unknown)(cmd, stream);
  }) as typeof redis.sendCommand;
  return seen;
}

describe('GetdelBatch', () => {
  let redis: Redis;
  let seen: { name: string; keys: string[] }[];
  beforeAll(async () => {
    redis = createRedis({ url: redisUrl(), name: 'ticket-batch', failFast: true });
    await waitReady(redis);
    seen = watch(redis);
  });
  afterAll(() => redis.disconnect());
  beforeEach(() => seen.splice(0));

  const keys = (n: number) => Array.from({ length: n }, (_, i) => `tb:${uid()}:${i}`);

  test('the first GETDEL after a quiet window goes at once, alone; those asked for within the window go together in one run, each getting its own value (nil for a key not there)', async () => {
    const ks = keys(5);
    for (const [i, k] of ks.entries()) await redis.set(k, `v${i}`);
    const missing = `tb:${uid()}:missing`;
    const batch = new GetdelBatch(redis, 20, () => 1000);
    const asked = [...ks, missing].map((k) => batch.getdel(k));
    // The first was sent as it was asked for; the others wait for the window's end.
    expect(seen).toEqual([{ name: 'getdel', keys: [ks[0]] }]);
    expect(await Promise.all(asked)).toEqual(['v0', 'v1', 'v2', 'v3', 'v4', null]);
    expect(seen).toEqual([
      { name: 'getdel', keys: [ks[0]] },
      { name: 'getdel_all', keys: [...ks.slice(1), missing] },
    ]);
    expect(await redis.exists(...ks)).toBe(0);
  });

  test('one key twice in a run (a ticket presented twice at once): the first gets the value, the second nil', async () => {
    const [opener, k] = keys(2);
    await redis.set(k, 'record');
    const batch = new GetdelBatch(redis, 20, () => 1000);
    const got = await Promise.all([batch.getdel(opener), batch.getdel(k), batch.getdel(k)]);
    expect(got).toEqual([null, 'record', null]);
    expect(seen.map((c) => c.name)).toEqual(['getdel', 'getdel_all']);
  });

  test('a GETDEL a window after the last one sent goes at once again; one left alone in its window goes as a GETDEL', async () => {
    const [a, b, c] = keys(3);
    let clock = 1000;
    const batch = new GetdelBatch(redis, 20, () => clock);
    await batch.getdel(a);
    clock += 5;
    await batch.getdel(b);
    // b waited alone: sent as a GETDEL at the window's end (sent at 1005 by this clock).
    expect(seen.map((x) => x.name)).toEqual(['getdel', 'getdel']);
    clock += 20;
    const p = batch.getdel(c);
    expect(seen.map((x) => x.keys[0])).toEqual([a, b, c]);
    await p;
  });

  test('a run Redis refuses refuses each redemption in it with its error, and the batch goes on', async () => {
    const [opener, k, wrong, after] = keys(4);
    await redis.set(k, 'record');
    // GETDEL of a list: WRONGTYPE, from inside the script (a ticket key always holds a string: only this test makes one fail).
    await redis.rpush(wrong, 'x');
    const batch = new GetdelBatch(redis, 20, () => 1000);
    const first = batch.getdel(opener);
    const run = [batch.getdel(k), batch.getdel(wrong)].map((p) => p.then(() => 'resolved', (e: Error) => e.message));
    await first;
    const outcomes = await Promise.all(run);
    expect(outcomes.every((o) => /WRONGTYPE/.test(o))).toBe(true);
    // Redis ran the script up to the error: the ticket before it is spent, as a ticket whose GETDEL reply is lost is.
    expect(await redis.exists(k)).toBe(0);
    await redis.set(after, 'next');
    expect(await batch.getdel(after)).toBe('next');
  });
});

describe('a burst of connects on a task', () => {
  let redis: Redis;
  let watched: Redis;
  let seen: { name: string; keys: string[] }[];
  let service: RealtimeServer;
  let base: string;
  const config = coreConfig();
  beforeAll(async () => {
    redis = await connectRedis();
    watched = await connectRedis();
    seen = watch(watched);
    // The task's clock held still: every redemption after the first falls within the window of the last one sent.
    const t0 = Date.now();
    ({ service, base } = await startService({ TICKET_BATCH_MS: '50' }, { redis: watched, now: () => t0 }));
  });
  afterAll(async () => {
    await service.close();
    watched.disconnect();
    redis.disconnect();
  });

  test('every stream is admitted, a ticket presented twice at once admits one of the two, and the redemptions after the first share script runs', async () => {
    const ch = `chat:${uid()}`;
    const tickets = await Promise.all(Array.from({ length: 6 }, (_, i) => ticketFor(redis, `tb-${uid()}-${i}`, [ch])));
    const key = (t: string) => new Keys(config.keyPrefix).ticket(sha256(t));
    const mine = new Set(tickets.map(key));
    const from = seen.length;
    const streams = [...tickets, tickets[2]].map((t) => new RawStream(`${base}/events?channels=${ch}&ticket=${t}`));
    const ready = (s: RawStream) => s.events().some((e) => e.event === 'ready');
    await Promise.all(streams.map((s) => s.until((x) => ready(x) || x.ended)));
    for (const s of streams.slice(0, 6).filter((_, i) => i !== 2)) expect(ready(s)).toBe(true);
    // Of the two presentations of tickets[2], one stream and one 401.
    const pair = [streams[2], streams[6]];
    expect(pair.filter(ready)).toHaveLength(1);
    expect(pair.filter((s) => !ready(s)).map((s) => s.status)).toEqual([401]);
    const sent = seen.slice(from).filter((c) => c.keys.some((k) => mine.has(k)));
    // Every presentation's GETDEL was sent once: 7 keys over the commands.
    expect(sent.flatMap((c) => c.keys).filter((k) => mine.has(k)).sort()).toEqual([...tickets, tickets[2]].map(key).sort());
    // The first alone, the six others in runs: fewer writes than redemptions.
    expect(sent[0].name).toBe('getdel');
    expect(sent.slice(1).every((c) => c.name === 'getdel_all')).toBe(true);
    expect(sent.length).toBeLessThan(7);
    for (const s of streams) s.close();
  });
});
