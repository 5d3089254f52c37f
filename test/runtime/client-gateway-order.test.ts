/**
 * The client SDK over API Gateway (the local emulator, the real Lambda handlers, Redis) when two producers' posts of
 * one channel cross: two publishes each fanned out inline by its own Lambda (or one inline and one through the
 * fan-out queue) post to the same connection, and the later-posted event has the lower id. The emulator holds the
 * first publish's post until the second publish has answered (its inline fan-out posted before the answer), so the
 * crossing is exact, not timed. The app must get both events, once each, in id order (DESIGN, "Ordering on API
 * Gateway").
 */
import pino from 'pino';
import type { LocalStack } from '../../local/stack';
import type { Envelope } from '../../client/src/index';
import { localTickets, nodeClient, publish, record, sameIds, until, type Recorder } from '../support/client-kit';
import { uid } from '../support/harness';

process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';

let stack: LocalStack;
const clients: Recorder[] = [];
beforeAll(async () => {
  const { startLocalStack } = await import('../../local/stack');
  stack = await startLocalStack({ logger: pino({ level: 'silent' }), env: { LOG_LEVEL: 'silent' } });
});
afterEach(() => {
  for (const r of clients.splice(0)) r.client.close();
});
afterAll(async () => {
  await stack?.close();
});

/** Decimal ids compared as numbers (they pass 2^53). */
const below = (a: string, b: string) => BigInt(a) < BigInt(b);
/** A frame the emulator posts to connection `to`: the event `{n}` of `channel`. */
const isEvent = (to: string, channel: string, n: number) => (frame: string, connectionId: string) => {
  const f = JSON.parse(frame) as Partial<Envelope<{ n?: number }>>;
  return connectionId === to && f.channel === channel && f.data?.n === n;
};

/**
 * An SDK on API Gateway subscribed to `ch`, with one event delivered (its subscription is live and it has a last
 * event), and the emulator's id of its connection.
 */
async function subscribed(ch: string, opts: { gapWaitMs?: number } = {}): Promise<{ rec: Recorder; first: string; conn: string }> {
  const before = new Set(stack.ws.connectionIds());
  const rec = record(nodeClient({ ticket: localTickets(stack.outputs.TicketUrl, 'alice'), transports: ['ws'], ...opts }), [ch]);
  clients.push(rec);
  await until(() => rec.client.state === 'open', 'open');
  // The SDK connects where the ticket says: the API Gateway stand-in, not the tasks' /live.
  const conn = stack.ws.connectionIds().filter((c) => !before.has(c));
  expect(conn).toHaveLength(1);
  const first = await publish(stack.outputs.PublishUrl, ch, { n: 0 });
  await until(() => rec.ids(ch).includes(first), 'the first event');
  return { rec, first, conn: conn[0] };
}

/**
 * Publishes `{n: 1}` and `{n: 2}` on `ch` so that their posts cross: 1's post is held by the emulator until 2's
 * publish has answered (2 was posted first). Returns the ids, 1's below 2's.
 */
async function crossed(conn: string, ch: string, i = 0): Promise<[string, string]> {
  const hold = stack.ws.holdPost(isEvent(conn, ch, 1));
  try {
    const one = publish(stack.outputs.PublishUrl, ch, { n: 1, i });
    await hold.held;
    const two = await publish(stack.outputs.PublishUrl, ch, { n: 2, i });
    hold.release();
    const ids: [string, string] = [await one, two];
    expect(below(ids[0], ids[1])).toBe(true);
    return ids;
  } finally {
    hold.release();
  }
}

test('two publishes whose posts cross (the lower id posted last): the app gets both, once each, in id order, and stats count no gap', async () => {
  const ch = `chat:x-${uid()}`;
  // The wait is not bounded within the test: only the missing event's arrival can end it (no resume, whatever the load).
  const { rec, first, conn } = await subscribed(ch, { gapWaitMs: 600_000 });
  const [one, two] = await crossed(conn, ch);
  const stats = () => rec.client.stats()[ch];
  // Both frames reached the SDK: delivered, or dropped as duplicates.
  await until(() => stats().received + stats().duplicates >= 3, 'both crossed events at the SDK', 10_000, () => stats());
  sameIds(rec.ids(ch), [first, one, two]);
  // Put in order on the connection (2 waited for 1), not by a resume.
  expect(stats()).toMatchObject({ received: 3, gaps: 0, reconnects: 0 });
});

test('the missing event never comes on this connection: after gapWaitMs the SDK resumes from the last event it delivered and the app gets it once, in order', async () => {
  const ch = `chat:x-${uid()}`;
  const { rec, first, conn } = await subscribed(ch, { gapWaitMs: 200 });
  // 1's post to this connection is held until the connection is gone (a post lost for good: then it answers 410).
  const hold = stack.ws.holdPost(isEvent(conn, ch, 1));
  try {
    const one = publish(stack.outputs.PublishUrl, ch, { n: 1 });
    await hold.held;
    const two = await publish(stack.outputs.PublishUrl, ch, { n: 2 });
    await until(() => rec.ids(ch).length >= 3, 'both events', 10_000, () => rec.client.stats()[ch]);
    hold.release();
    sameIds(rec.ids(ch), [first, await one, two]);
    expect(rec.client.stats()[ch].reconnects).toBe(1);
    // A third event afterwards: live again on the new connection, nothing repeated.
    const three = await publish(stack.outputs.PublishUrl, ch, { n: 3 });
    await until(() => rec.ids(ch).includes(three), 'the event after', 10_000, () => rec.client.stats()[ch]);
    sameIds(rec.ids(ch), [first, await one, two, three]);
    expect(rec.client.stats()[ch]).toMatchObject({ received: 4, gaps: 0 });
  } finally {
    hold.release();
  }
});

test('no duplicates: the same crossing three times in a row, then an in-order burst; every event once, in id order', async () => {
  const ch = `chat:x-${uid()}`;
  const { rec, first, conn } = await subscribed(ch, { gapWaitMs: 600_000 });
  const want = [first];
  for (let i = 0; i < 3; i++) want.push(...(await crossed(conn, ch, i)));
  for (let i = 0; i < 5; i++) want.push(await publish(stack.outputs.PublishUrl, ch, { n: 10 + i }));
  await until(() => rec.ids(ch).length >= want.length, 'every event', 10_000, () => rec.client.stats()[ch]);
  sameIds(rec.ids(ch), want);
  expect(rec.client.stats()[ch]).toMatchObject({ received: want.length, gaps: 0, reconnects: 0 });
});
