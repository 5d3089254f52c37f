import { EventSource } from 'eventsource';
import type Redis from 'ioredis';
import { decodeCursor, encodeCursor } from '../../core/cursor';
import { publish } from '../../core/events';
import { issueTicket } from '../../core/tickets';
import type { RealtimeServer } from '../../service/realtime-server';
import { channelsOnShards, connectRedis, cookieFetch, coreConfig, eventually, get, RawStream, startService, ticketFor, uid } from '../support/harness';
import { Keys } from '../../core/redis/keys';

/** The default prefix's key names (hash-tagged: see core/redis/keys.ts). */
const K = new Keys('rt:');

const SERVER = { kind: 'server', principal: 'test-backend' } as const;
const config = coreConfig();

let redis: Redis;
let service: RealtimeServer;
let base: string;
const open: { close(): void }[] = [];

beforeAll(async () => {
  redis = await connectRedis();
  ({ service, base } = await startService({ HEARTBEAT_MS: '1000', POLL_TIMEOUT_MS: '1500' }));
});
afterEach(() => {
  for (const o of open.splice(0)) o.close();
});
afterAll(async () => {
  await service.close();
  redis.disconnect();
});

const pub = (channel: string, data: unknown, type = 'update') => publish({ channel, type, data }, SERVER, { redis, config });
const stream = (url: string, headers: Record<string, string> = {}) => {
  const s = new RawStream(url, headers);
  open.push(s);
  return s;
};
const ready = (s: RawStream) => s.events().some((e) => e.event === 'ready');
const ids = (s: RawStream) => s.events().filter((e) => e.event !== 'ready' && e.event !== 'reset').map((e) => JSON.parse(e.data).id as string);
const cookieOf = (s: RawStream) => String(s.headers['set-cookie']).split(';')[0];

describe('GET /events', () => {
  test('ticket: stream opens with a retry hint, ready, then events as id/event/data; heartbeats flow', async () => {
    const ch = `chat:${uid()}`;
    const s = stream(`${base}/events?channels=${ch}&ticket=${await ticketFor(redis, 'alice', [ch])}`);
    await s.until(ready);
    expect(s.status).toBe(200);
    expect(s.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    expect(s.headers['cache-control']).toBe('no-cache, no-transform');
    expect(s.text.startsWith('retry: 3000\n\n')).toBe(true);
    const p = await pub(ch, { score: 1 });
    await s.until((x) => ids(x).length === 1);
    const ev = s.events().find((e) => e.event === 'update')!;
    expect(ev.id).toBe(p.id);
    expect(JSON.parse(ev.data)).toEqual({ channel: ch, id: p.id, type: 'update', data: { score: 1 }, ts: expect.any(Number) });
    await s.until((x) => x.text.includes('\n: hb\n\n') || x.text.startsWith(': hb'), 5000);
  });

  test('public channel: no ticket needed, no cookie set', async () => {
    const ch = `scores:${uid()}`;
    const s = stream(`${base}/events?channels=${ch}`);
    await s.until(ready);
    expect(s.headers['set-cookie']).toBeUndefined();
    await pub(ch, 7);
    await s.until((x) => ids(x).length === 1);
  });

  test('framing: newlines and "\\n\\nevent:" in a payload never break the frame', async () => {
    const ch = `scores:${uid()}`;
    const s = stream(`${base}/events?channels=${ch}`);
    await s.until(ready);
    const evil = { text: 'a\n\nevent: admin\ndata: {"x":1}\r\n\r\nid: 999\rretry: 1', nested: ['\n\n', '\r'] };
    await pub(ch, evil);
    await pub(ch, 'after');
    await s.until((x) => ids(x).length === 2);
    const evs = s.events().filter((e) => e.event !== 'ready');
    expect(evs.map((e) => e.event)).toEqual(['update', 'update']);
    expect(JSON.parse(evs[0].data).data).toEqual(evil);
    expect(JSON.parse(evs[1].data).data).toBe('after');
    expect(s.text).not.toMatch(/^event: admin/m);
    expect(s.text).not.toContain('\r');
  });

  describe('errors are JSON with the right status', () => {
    const expectError = async (url: string, status: number, code: string, headers: Record<string, string> = {}) => {
      const r = await get(url, headers);
      expect({ status: r.status, type: r.headers['content-type'] }).toEqual({ status, type: 'application/json' });
      expect(JSON.parse(r.body)).toEqual({ error: { code, message: expect.any(String) } });
    };
    test('no ticket: 401', () => expectError(`${base}/events?channels=chat:${uid()}`, 401, 'unauthorized'));
    test('unknown ticket: 401', () => expectError(`${base}/events?channels=chat:x&ticket=${'A'.repeat(43)}`, 401, 'ticket_invalid'));
    test('malformed ticket: 401', () => expectError(`${base}/events?channels=chat:x&ticket=abc`, 401, 'ticket_invalid'));
    test('spent ticket: 401', async () => {
      const ch = `chat:${uid()}`;
      const t = await ticketFor(redis, 'alice', [ch]);
      const s = stream(`${base}/events?channels=${ch}&ticket=${t}`);
      await s.until(ready);
      await expectError(`${base}/events?channels=${ch}&ticket=${t}`, 401, 'ticket_invalid');
    });
    test('expired ticket: 401', async () => {
      const ch = `chat:${uid()}`;
      const t = (await issueTicket({ identity: { kind: 'user', sub: 'alice' }, channels: [ch] }, { redis, config: coreConfig({ ticketTtlSeconds: 1 }) })).ticket;
      await new Promise((r) => setTimeout(r, 1500));
      await expectError(`${base}/events?channels=${ch}&ticket=${t}`, 401, 'ticket_invalid');
    });
    test('ws ticket on the SSE service: 401', async () => {
      const ch = `chat:${uid()}`;
      await expectError(`${base}/events?channels=${ch}&ticket=${await ticketFor(redis, 'alice', [ch], 'ws')}`, 401, 'ticket_invalid');
    });
    test('channel outside the grant: 403', async () => {
      const ch = `chat:${uid()}`;
      await expectError(`${base}/events?channels=${ch},chat:other&ticket=${await ticketFor(redis, 'alice', [ch])}`, 403, 'channel_not_granted');
    });
    test('malformed channel name: 400', () => expectError(`${base}/events?channels=chat:ok,Bad%20Name`, 400, 'invalid_channel'));
    test('unknown namespace: 400', () => expectError(`${base}/events?channels=nope:1`, 400, 'invalid_channel'));
    test('no channels: 400', () => expectError(`${base}/events`, 400, 'invalid_channel'));
    test('too many channels: 400', () => expectError(`${base}/events?channels=${Array.from({ length: 17 }, (_, i) => `scores:${i}`).join(',')}`, 400, 'too_many_channels'));
    test('malformed cursor: 400', () => expectError(`${base}/events?channels=scores:1&lastEventId=abc`, 400, 'invalid_cursor'));
    test('origin not allowed: 403', () => expectError(`${base}/events?channels=scores:1`, 403, 'origin_not_allowed', { origin: 'http://evil.example' }));
    test('unknown path: 404', () => expectError(`${base}/nope`, 404, 'not_found'));
    test('allowed origin: CORS with credentials', async () => {
      const s = stream(`${base}/events?channels=scores:${uid()}`, { origin: 'http://allowed.example' });
      await s.until(ready);
      expect(s.headers['access-control-allow-origin']).toBe('http://allowed.example');
      expect(s.headers['access-control-allow-credentials']).toBe('true');
    });
  });
});

describe('resume', () => {
  test('Last-Event-ID on a two-channel stream: exactly the missed events of both, in order, then live', async () => {
    const a = `chat:${uid()}`;
    const b = `chat:${uid()}`;
    const ticket = await ticketFor(redis, 'alice', [a, b]);
    const first = stream(`${base}/events?channels=${a},${b}&ticket=${ticket}`);
    await first.until(ready);
    const seen = [(await pub(a, 1)).id, (await pub(b, 2)).id];
    await first.until((x) => ids(x).length === 2);
    const last = first.events().at(-1)!.id!;
    first.close();
    const missed: string[] = [];
    for (let i = 0; i < 6; i++) missed.push((await pub(i % 2 ? a : b, `m${i}`)).id);
    // The reconnect carries the cookie of the first response and, like a native reconnect, the spent ticket.
    const again = stream(`${base}/events?channels=${a},${b}&ticket=${ticket}`, { 'last-event-id': last, cookie: cookieOf(first) });
    await again.until(ready);
    expect(again.status).toBe(200);
    expect(ids(again)).toEqual(missed);
    const live = await pub(b, 'live');
    await again.until((x) => ids(x).length === 7);
    expect(ids(again)).toEqual([...missed, live.id]);
    expect(seen.some((id) => ids(again).includes(id))).toBe(false);
  });

  test('events published while the replay runs: none lost, none twice', async () => {
    const a = `scores:${uid()}`;
    const b = `scores:${uid()}`;
    const start = await pub(a, 'start');
    const all: string[] = [];
    for (let i = 0; i < 50; i++) all.push((await pub(i % 2 ? a : b, i)).id);
    const s = stream(`${base}/events?channels=${a},${b}&lastEventId=${start.id}`);
    const during: Promise<{ id: string }>[] = [];
    for (let i = 0; i < 50; i++) during.push(pub(i % 2 ? b : a, `d${i}`));
    all.push(...(await Promise.all(during)).map((p) => p.id));
    await s.until((x) => ids(x).length >= 100);
    await new Promise((r) => setTimeout(r, 200));
    expect(ids(s)).toEqual(all.sort((x, y) => Number(x) - Number(y)));
  });

  test('cursor older than the retained history: reset for that channel, the others replay', async () => {
    const tiny = `tiny:${uid()}`;
    const chat = `chat:${uid()}`;
    const s0 = stream(`${base}/events?channels=${chat},${tiny}&ticket=${await ticketFor(redis, 'alice', [chat, tiny])}`);
    await s0.until(ready);
    const cursor = s0.events()[0].cursor!;
    s0.close();
    for (let i = 0; i < 5; i++) await pub(tiny, i);
    const c = await pub(chat, 'kept');
    const s = stream(`${base}/events?channels=${chat},${tiny}&lastEventId=${cursor}`, { cookie: cookieOf(s0) });
    await s.until(ready);
    const evs = s.events();
    expect(evs.filter((e) => e.event === 'reset').map((e) => JSON.parse(e.data))).toEqual([{ channel: tiny, reason: 'history_unavailable' }]);
    expect(ids(s)).toEqual([c.id]);
  });

  test('native EventSource: reconnects on its own with the cookie after the ticket is spent, nothing lost', async () => {
    const ch = `user:bob`;
    const { fetch } = cookieFetch();
    const es = new EventSource(`${base}/events?channels=${ch}&ticket=${await ticketFor(redis, 'bob', [ch])}`, { fetch });
    open.push(es);
    const got: string[] = [];
    let opens = 0;
    let readies = 0;
    es.addEventListener('open', () => opens++);
    es.addEventListener('ready', () => readies++);
    es.addEventListener('update', (e) => got.push(JSON.parse(e.data).id));
    await eventually(() => readies === 1, 5000, 'ready');
    const sent = [(await pub(ch, 1)).id];
    await eventually(() => got.length === 1, 5000, 'first event');
    // Drop every connection server-side, as a task restart or network blip would.
    service.server.closeAllConnections();
    sent.push((await pub(ch, 2)).id, (await pub(ch, 3)).id);
    await eventually(() => opens === 2, 10_000, 'reconnect');
    sent.push((await pub(ch, 4)).id);
    await eventually(() => got.length === 4, 5000, 'all events');
    expect(got).toEqual(sent);
    expect(es.readyState).toBe(EventSource.OPEN);
  });
});

describe('native reconnect of a stream over channels on different shards (issue 23, item 3): the `eventsource` package', () => {
  test('every event carries the connection\'s cursor; after a drop the package resends the last one and gets every missed event of every channel once, in order', async () => {
    // Three channels whose keys sit on the three primaries of a three-primary cluster's slot split.
    const channels = channelsOnShards('chat');
    const { fetch: jar } = cookieFetch();
    const sentIds: (string | null)[] = [];
    const recording: typeof fetch = (input, init) => {
      sentIds.push(new Headers(init?.headers).get('last-event-id'));
      return jar(input, init);
    };
    const es = new EventSource(`${base}/events?channels=${channels.join(',')}&ticket=${await ticketFor(redis, 'erin', channels)}`, { fetch: recording });
    open.push(es);
    const got: { channel: string; id: string }[] = [];
    const cursors: string[] = [];
    let readies = 0;
    es.addEventListener('ready', (e) => {
      readies++;
      cursors.push(e.lastEventId);
    });
    es.addEventListener('update', (e) => {
      const env = JSON.parse(e.data) as { channel: string; id: string };
      got.push({ channel: env.channel, id: env.id });
      cursors.push(e.lastEventId);
    });
    await eventually(() => readies === 1, 5000, 'ready');
    const sent: { channel: string; id: string }[] = [];
    const send = async (n: number) => {
      // Uneven: the channels' positions move apart, so one number could not stand for them.
      for (let i = 0; i < n; i++) {
        const channel = channels[i % 5 === 0 ? 2 : i % 2];
        sent.push({ channel, id: (await pub(channel, i)).id });
      }
    };
    await send(9);
    await eventually(() => got.length === 9, 5000, 'the first events');
    // Each event's id is the connection's cursor: every channel's last id so far.
    const beforeDrop = decodeCursor(cursors.at(-1), channels.length).positions;
    expect(beforeDrop).toEqual(channels.map((c) => Number(sent.filter((x) => x.channel === c).at(-1)?.id ?? 0)));

    service.server.closeAllConnections();
    await send(12);
    await eventually(() => readies === 2, 10_000, 'the reconnect');
    await send(4);
    await eventually(() => got.length === sent.length, 10_000, 'every event');
    // Once each, in order per channel, nothing lost (and in publish order overall, as replayed and live).
    expect(got).toEqual(sent);
    // The package resent the last id it saw: the cursor over every channel.
    expect(sentIds).toEqual([null, cursors[9]]);
    expect(decodeCursor(sentIds[1], channels.length).positions).toEqual(beforeDrop);
    expect(es.readyState).toBe(EventSource.OPEN);
  });
});

describe('GET /poll', () => {
  test('backlog: returns at once with the events and the next cursor', async () => {
    const ch = `scores:${uid()}`;
    const c0 = await pub(ch, 0);
    const p1 = await pub(ch, 1);
    const p2 = await pub(ch, 2);
    const r = await get(`${base}/poll?channels=${ch}&cursor=${c0.id}`);
    expect(r.status).toBe(200);
    const body = JSON.parse(r.body);
    expect(body.events.map((e: { id: string }) => e.id)).toEqual([p1.id, p2.id]);
    expect(body).toMatchObject({ cursor: encodeCursor([Number(p2.id)]), resets: [] });
  });

  test('no backlog: waits, returns when an event arrives', async () => {
    const ch = `scores:${uid()}`;
    const c0 = await pub(ch, 0);
    const pending = get(`${base}/poll?channels=${ch}&cursor=${c0.id}`);
    await eventually(() => service.hub.channelCount > 0 && true, 2000);
    await new Promise((r) => setTimeout(r, 100));
    const p = await pub(ch, 'late');
    const body = JSON.parse((await pending).body);
    expect(body.events.map((e: { data: unknown }) => e.data)).toEqual(['late']);
    expect(decodeCursor(body.cursor, 1).positions).toEqual([Number(p.id)]);
  });

  test('timeout: returns empty with the cursor', async () => {
    const ch = `scores:${uid()}`;
    const c0 = await pub(ch, 0);
    const r = await get(`${base}/poll?channels=${ch}&cursor=${c0.id}`);
    // The answer's cursor is the connection's (`core/cursor.ts`), even for a plain decimal asked with.
    expect(JSON.parse(r.body)).toEqual({ events: [], cursor: encodeCursor([Number(c0.id)]), resets: [] });
  });

  test('same auth as streams: a ticket once, then the cookie', async () => {
    const ch = `chat:${uid()}`;
    const c0 = await pub(ch, 0);
    expect((await get(`${base}/poll?channels=${ch}&cursor=${c0.id}`)).status).toBe(401);
    const first = await get(`${base}/poll?channels=${ch}&cursor=${c0.id}&ticket=${await ticketFor(redis, 'carol', [ch])}`);
    expect(first.status).toBe(200);
    const cookie = String(first.headers['set-cookie']).split(';')[0];
    const p = await pub(ch, 1);
    const second = await get(`${base}/poll?channels=${ch}&cursor=${c0.id}`, { cookie });
    expect(JSON.parse(second.body).events.map((e: { id: string }) => e.id)).toEqual([p.id]);
    const tampered = cookie.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A'));
    expect((await get(`${base}/poll?channels=${ch}&cursor=${c0.id}`, { cookie: tampered })).status).toBe(401);
  });
});

describe('two service instances', () => {
  let other: { service: RealtimeServer; base: string };
  beforeAll(async () => {
    other = await startService();
  });
  afterAll(() => other.service.close());

  test('an event published once reaches clients of both; a client resumes on the other without loss', async () => {
    const ch = `chat:${uid()}`;
    const onA = stream(`${base}/events?channels=${ch}&ticket=${await ticketFor(redis, 'alice', [ch])}`);
    const onB = stream(`${other.base}/events?channels=${ch}&ticket=${await ticketFor(redis, 'bob', [ch])}`);
    await Promise.all([onA.until(ready), onB.until(ready)]);
    const p = await pub(ch, 'both');
    await Promise.all([onA.until((x) => ids(x).length === 1), onB.until((x) => ids(x).length === 1)]);
    expect(ids(onA)).toEqual([p.id]);
    expect(ids(onB)).toEqual([p.id]);
    onA.close();
    const missed = [(await pub(ch, 'm1')).id, (await pub(ch, 'm2')).id];
    const moved = stream(`${other.base}/events?channels=${ch}`, { 'last-event-id': p.id, cookie: cookieOf(onA) });
    await moved.until(ready);
    expect(ids(moved)).toEqual(missed);
  });
});

describe('subscriptions', () => {
  test('one Redis subscription per channel per process, dropped when the last stream leaves', async () => {
    const ch = `scores:${uid()}`;
    const live = K.live(ch);
    const numsub = async () => ((await redis.pubsub('NUMSUB', live)) as [string, number])[1];
    const streams = Array.from({ length: 5 }, () => stream(`${base}/events?channels=${ch}`));
    await Promise.all(streams.map((s) => s.until(ready)));
    expect(await numsub()).toBe(1);
    streams.forEach((s) => s.close());
    await eventually(async () => (await numsub()) === 0, 5000, 'unsubscribe');
  });
});
