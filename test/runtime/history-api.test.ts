/**
 * The history API (`GET /history`, issue 25): on the tasks for ticket holders (subscribe's grant rules, rate-limited)
 * and on the HTTP API stand-in for IAM backends (SigV4 verified, through the server SDK): pages forward and reverse
 * bounded in events and bytes, the explicit `reset` when the history does not reach back to `since`, JSON errors for
 * bad input; and on every transport, a client that gets `reset` rebuilds the channel from `history()`.
 */
import pino from 'pino';
import type { Envelope, TicketAnswer } from '../../client/src/index';
import { createServerClient } from '../../server-sdk/src/index';
import { startLocalStack, type LocalStack } from '../../local/stack';
import { connectRedis, get, startService, TEST_NAMESPACES, ticketFor, uid } from '../support/harness';
import { localTickets, nodeClient, until } from '../support/client-kit';
import type Redis from 'ioredis';

const CREDENTIALS = { accessKeyId: 'AKIDLOCALEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' };
const REGION = 'eu-west-1';
/** The smallest REPLAY_MAX_BYTES the config takes: a page of 4 KB events holds three of them. */
const MAX_BYTES = 16_384;

let stack: LocalStack;
let redis: Redis;
beforeAll(async () => {
  redis = await connectRedis();
  stack = await startLocalStack({
    logger: pino({ level: 'silent' }),
    verifySignatures: { credentials: CREDENTIALS, region: REGION },
    env: { NAMESPACES_JSON: JSON.stringify(TEST_NAMESPACES), REPLAY_MAX_BYTES: String(MAX_BYTES), ANON_REQUESTS_PER_MINUTE: '0', LOG_LEVEL: 'silent', RETRY_MS: '200', POLL_TIMEOUT_MS: '2000' },
  });
}, 30_000);
afterAll(async () => {
  await stack?.close();
  redis?.disconnect();
});

const sdk = () => createServerClient({ publishUrl: stack.outputs.PublishUrl, region: REGION, credentials: CREDENTIALS });
const tasksHistory = () => stack.outputs.SseUrl.replace(/\/events$/, '/history');
const ids = (events: { id: string }[]) => events.map((e) => e.id);
/** Publishes `n` events (through the server SDK, signed) and returns their ids in order. */
async function publishN(ch: string, n: number, data: (i: number) => unknown = (i) => ({ i })): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push((await sdk().publish(ch, 'msg', data(i))).id);
  return out;
}

describe('the HTTP API (IAM, server SDK)', () => {
  test('paging forward: pages of at most limit, more/next until the last, together every event once in order, position to resume from', async () => {
    const ch = `chat:${uid()}`;
    const published = await publishN(ch, 12);
    const got: string[] = [];
    let since: string | undefined;
    let pages = 0;
    for (;;) {
      const page = await sdk().history(ch, { limit: 5, since });
      pages++;
      expect(page.events.length).toBeLessThanOrEqual(5);
      expect(page.reset).toBe(false);
      got.push(...ids(page.events));
      if (!page.more) {
        expect(page.next).toBeUndefined();
        expect(BigInt(page.position)).toBeGreaterThanOrEqual(BigInt(published.at(-1)!));
        break;
      }
      expect(page.next).toBe(page.events.at(-1)!.id);
      since = page.next;
    }
    expect(got).toEqual(published);
    expect(pages).toBe(3);
  });

  test('paging in reverse: newest first, before=next, together every event once newest to oldest', async () => {
    const ch = `chat:${uid()}`;
    const published = await publishN(ch, 12);
    const got: string[] = [];
    let before: string | undefined;
    for (let pages = 0; pages < 10; pages++) {
      const page = await sdk().history(ch, { limit: 5, reverse: true, before });
      got.push(...ids(page.events));
      if (!page.more) break;
      before = page.next;
    }
    expect(got).toEqual([...published].reverse());
    // since bounds a reverse read from below: the newest events after it.
    const tail = await sdk().history(ch, { reverse: true, since: published[8] });
    expect(ids(tail.events)).toEqual([published[11], published[10], published[9]]);
  });

  test('byte bound: a page of 4 KB events stops at REPLAY_MAX_BYTES whatever the limit, forward and reverse', async () => {
    const ch = `chat:${uid()}`;
    const published = await publishN(ch, 8, (i) => ({ i, pad: 'x'.repeat(4000) }));
    const forward = await sdk().history(ch, { limit: 100 });
    expect(forward.events.length).toBe(3);
    expect(forward.more).toBe(true);
    expect(ids(forward.events)).toEqual(published.slice(0, 3));
    const reverse = await sdk().history(ch, { limit: 100, reverse: true });
    expect(ids(reverse.events)).toEqual([published[7], published[6], published[5]]);
    expect(reverse.more).toBe(true);
  });

  test('not covered: since older than what a trimmed history holds answers reset: true and nothing; without since, what is held', async () => {
    const ch = `tiny:${uid()}`;
    const published = await publishN(ch, 6);
    const page = await sdk().history(ch, { since: published[0] });
    expect(page).toMatchObject({ channel: ch, reset: true, events: [], more: false });
    const covered = await sdk().history(ch, { since: published[2] });
    expect(covered).toMatchObject({ reset: false });
    expect(ids(covered.events)).toEqual(published.slice(3));
    const held = await sdk().history(ch);
    expect(held.reset).toBe(false);
    expect(ids(held.events)).toEqual(published.slice(3));
  });

  test('an unsigned request is refused before the handler (403); bad input gets a JSON 400 naming the parameter', async () => {
    const url = stack.outputs.PublishUrl.replace(/\/publish$/, '/history');
    const unsigned = await get(`${url}?channel=chat:x`);
    expect(unsigned.status).toBe(403);
    await expect(sdk().history('chat:x', { limit: 0 })).rejects.toMatchObject({ status: 400, code: 'bad_request', message: expect.stringMatching(/limit/) });
    await expect(sdk().history('chat:x', { before: '5' })).rejects.toMatchObject({ status: 400, code: 'bad_request', message: expect.stringMatching(/reverse/) });
    await expect(sdk().history('nope:x')).rejects.toMatchObject({ status: 400, code: 'invalid_channel' });
    await expect(sdk().history('chat:x', { since: 'abc' })).rejects.toMatchObject({ status: 400, code: 'invalid_cursor' });
    await expect(sdk().history('chat:x', { since: String(Date.now() * 1000 + 3_600_000_000) })).rejects.toMatchObject({ status: 400, code: 'invalid_cursor' });
  });
});

describe('the tasks (ticket holders)', () => {
  const read = (query: string, headers: Record<string, string> = {}) => get(`${tasksHistory()}?${query}`, headers);

  test('a ticket for the channel reads a page; the answer is JSON with the envelopes as published', async () => {
    const ch = `chat:${uid()}`;
    const published = await publishN(ch, 3);
    const ticket = await ticketFor(redis, 'alice', [ch]);
    const r = await read(`channel=${ch}&ticket=${ticket}&reverse=true&limit=2`);
    expect(r.status).toBe(200);
    const page = JSON.parse(r.body);
    expect(page).toMatchObject({ channel: ch, reset: false, more: true, next: published[1] });
    expect(page.events.map((e: Envelope) => [e.id, e.channel, e.type, e.data])).toEqual([
      [published[2], ch, 'msg', { i: 2 }],
      [published[1], ch, 'msg', { i: 1 }],
    ]);
  });

  test('grants refused: no ticket (401), a ticket for another channel (403), a spent ticket (401), an owner channel of another user (403)', async () => {
    const ch = `chat:${uid()}`;
    await publishN(ch, 1);
    const none = await read(`channel=${ch}`);
    expect(none.status).toBe(401);
    expect(JSON.parse(none.body).error.code).toBe('unauthorized');
    const other = await read(`channel=${ch}&ticket=${await ticketFor(redis, 'alice', [`chat:${uid()}`])}`);
    expect(other.status).toBe(403);
    expect(JSON.parse(other.body).error.code).toBe('channel_not_granted');
    const ticket = await ticketFor(redis, 'alice', [ch]);
    expect((await read(`channel=${ch}&ticket=${ticket}`)).status).toBe(200);
    expect((await read(`channel=${ch}&ticket=${ticket}`)).status).toBe(401);
    const owner = await read(`channel=user:bob&ticket=${await ticketFor(redis, 'alice', ['chat:x'])}`);
    expect(owner.status).toBe(403);
  });

  test('a public channel needs no ticket; bad input gets a JSON 400 and spends the ticket presented', async () => {
    const ch = `scores:${uid()}`;
    const published = await publishN(ch, 2);
    const r = await read(`channel=${ch}`);
    expect(r.status).toBe(200);
    expect(ids(JSON.parse(r.body).events)).toEqual(published);
    const ticket = await ticketFor(redis, 'alice', [`chat:${ch.slice(7)}`]);
    const bad = await read(`channel=chat:${ch.slice(7)}&ticket=${ticket}&reverse=maybe`);
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body).error).toMatchObject({ code: 'bad_request', message: expect.stringMatching(/reverse/) });
    expect((await read(`channel=chat:${ch.slice(7)}&ticket=${ticket}`)).status).toBe(401);
    expect(JSON.parse((await read('channel=')).body).error.code).toBe('invalid_channel');
  });
});

test('rate limit: ANON_REQUESTS_PER_MINUTE per client IP without a ticket and per user with one (injected clock)', async () => {
  let clock = 1_700_000_000_000;
  const { service, base } = await startService({ ANON_REQUESTS_PER_MINUTE: '2' }, { now: () => clock });
  try {
    const pub = `scores:${uid()}`;
    const answers = [];
    for (let i = 0; i < 3; i++) answers.push((await get(`${base}/history?channel=${pub}`)).status);
    expect(answers).toEqual([200, 200, 429]);
    const ch = `chat:${uid()}`;
    const user = `u${uid()}`;
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await get(`${base}/history?channel=${ch}&ticket=${await ticketFor(redis, user, [ch])}`)).status);
    expect(statuses).toEqual([200, 200, 429]);
    clock += 60_000;
    expect((await get(`${base}/history?channel=${pub}`)).status).toBe(200);
  } finally {
    await service.close();
  }
});

describe('a client that gets reset rebuilds the channel from history()', () => {
  const transports = [
    ['sse', 'sse', undefined],
    ['poll', 'poll', undefined],
    ['/live', 'ws', 'live'],
    ['API Gateway', 'ws', 'apigw'],
  ] as const;
  it.each(transports)('%s', async (_name, transport, ws) => {
    const ch = `tiny:${uid()}`;
    // Six events into a history of three: a client resuming after the first has lost two of them.
    const published = await publishN(ch, 6);
    const live = (t: TicketAnswer) => (ws === 'live' ? { ...t, wsUrl: `${stack.outputs.LiveUrl}?ticket=${t.ticket}` } : t);
    const client = nodeClient({ ticket: localTickets(stack.outputs.TicketUrl, 'alice', live), transports: [transport] });
    const room = new Map<string, unknown>();
    let rebuilt = 0;
    try {
      client.subscribe(ch, {
        since: published[0],
        onEvent: (e) => void room.set(e.id, e.data),
        onReset: (c) => {
          void (async () => {
            // The documented rebuild: the newest page, newest first, merged by id with what arrives live.
            const page = await client.history(c, { reverse: true, limit: 50 });
            for (const e of [...page.events].reverse()) room.set(e.id, e.data);
            rebuilt++;
          })();
        },
      });
      await until(() => rebuilt === 1 && client.state === 'open', 'reset and rebuild', 20_000, () => ({ rebuilt, state: client.state }));
      expect(client.transport).toBe(transport);
      const after = (await sdk().publish(ch, 'msg', { i: 6 })).id;
      await until(() => room.has(after), 'the live event');
      expect([...room.keys()].sort()).toEqual([...published.slice(3), after].sort());
      expect(room.get(published[3])).toEqual({ i: 3 });
    } finally {
      client.close();
    }
  });
});
