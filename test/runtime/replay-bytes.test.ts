/**
 * Every replay has a byte budget (issue 20, item 2): a page ends at REPLAY_MAX_EVENTS events or REPLAY_MAX_BYTES bytes
 * (1 MiB by default), on /poll, /events, /live and the API Gateway subscribe. With the largest events (32 KB
 * envelopes) on 16 channels: each page stays within the budget, and resuming from each page's cursor gives every
 * event once, in id order.
 */
import { createServer } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import type Redis from 'ioredis';
import pino from 'pino';
import { parseChannel } from '../../core/channels';
import type { Namespaces } from '../../core/config';
import { REPLAY_FRAME_BYTES } from '../../core/broker';
import { encodeCursor } from '../../core/cursor';
import { publish, replay, type Cursors } from '../../core/events';
import { Keys } from '../../core/redis/keys';
import type { LocalStack } from '../../local/stack';
import { LiveEvent } from '../../service/hub';
import { PollTransport } from '../../service/poll-transport';
import type { Session } from '../../service/session';
import { connectRedis, coreConfig, eventually, get, RawStream, TEST_NAMESPACES, ticketFor, uid } from '../support/harness';
import { connectWs, type WsClient } from './ws-support';

process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';

const SERVER = { kind: 'server', principal: 'arn:aws:iam::1:role/backend' } as const;
const NAMESPACES: Namespaces = {
  ...TEST_NAMESPACES,
  big: { subscribe: 'public', publish: 'server', historySize: 100, historyTtlSeconds: 600 },
  bigchat: { subscribe: 'authenticated', publish: 'server', historySize: 100, historyTtlSeconds: 600 },
};
const MiB = 1024 * 1024;
const CHANNELS = 16;
const PER_CHANNEL = 12;
/** 192 events of about 32 KB: 6 MB, six pages of 1 MiB. */
const TOTAL = CHANNELS * PER_CHANNEL;

let redis: Redis;
let stack: LocalStack;
let keys: Keys;
const deps = () => ({ redis, config: coreConfig({ keyPrefix: keys.prefix, namespaces: NAMESPACES }) });
const open: WsClient[] = [];

beforeAll(async () => {
  redis = await connectRedis();
  keys = new Keys(`rb${uid()}:`);
  const { startLocalStack } = await import('../../local/stack');
  stack = await startLocalStack({
    logger: pino({ level: 'silent' }),
    webSocketMode: 'both',
    // METRICS_INTERVAL_MS 0: the counters are never reset, so a test can read SlowConsumerDrops.
    env: { KEY_PREFIX: keys.prefix, NAMESPACES_JSON: JSON.stringify(NAMESPACES), WS_GONE_GRACE_MS: '0', LOG_LEVEL: 'silent', ANON_REQUESTS_PER_MINUTE: '0', METRICS_INTERVAL_MS: '0' },
  });
});
afterEach(() => {
  for (const c of open.splice(0)) c.close();
});
afterAll(async () => {
  await stack.close();
  redis.disconnect();
});

/** Publishes PER_CHANNEL events of the largest size on each of CHANNELS channels of `ns`, interleaved; returns channels, ids and the cursor before them. */
async function largest(ns: string, perChannel = PER_CHANNEL): Promise<{ channels: string[]; ids: string[]; before: number }> {
  const channels = Array.from({ length: CHANNELS }, () => `${ns}:${uid()}`);
  const config = deps().config;
  const ids: string[] = [];
  let envelopeBytes = 0;
  for (let i = 0; i < perChannel; i++) {
    for (const channel of channels) {
      // An envelope of just under MAX_PAYLOAD_BYTES (32768): channel, id, type, ts and quotes take about 100 bytes.
      const r = await publish({ channel, type: 't', data: 'x'.repeat(config.maxPayloadBytes - 120) }, SERVER, deps());
      ids.push(r.id);
      envelopeBytes = Math.max(envelopeBytes, Buffer.byteLength(r.envelope!));
    }
  }
  expect(envelopeBytes).toBeGreaterThan(32_000);
  return { channels, ids, before: Number(ids[0]) - 1 };
}

const idOf = (e: string) => JSON.parse(e).id as string;

test('core replay: pages of at most 1 MiB (envelopes and framing), resumed from each position: every event once, in order', async () => {
  const { channels, ids, before } = await largest('big');
  const parsed = channels.map((c) => parseChannel(c, NAMESPACES));
  const got: string[] = [];
  // One number for every channel (the plain decimal a client held before positions were per channel), then the
  // positions per channel each page answers.
  let cursor: Cursors = { positions: parsed.map(() => before), shared: true };
  for (let pages = 1; ; pages++) {
    const r = await replay(parsed, cursor, deps());
    const bytes = r.events.reduce((n, e) => n + Buffer.byteLength(e) + REPLAY_FRAME_BYTES, 0);
    expect(bytes).toBeLessThanOrEqual(MiB);
    expect(r.events.length).toBeGreaterThan(0);
    got.push(...r.events.map(idOf));
    if (!r.more) break;
    cursor = r.positions;
    expect(pages).toBeLessThan(TOTAL);
  }
  expect(got).toEqual(ids);
});

test('GET /poll (16 public channels, no ticket): each answer at most 1 MiB; resuming from its cursor gives every event once, in order', async () => {
  const { channels, ids, before } = await largest('big');
  const base = stack.outputs.SseUrl.replace(/\/events$/, '');
  const got: string[] = [];
  let cursor = String(before);
  let largestAnswer = 0;
  for (let pages = 1; ; pages++) {
    const res = await get(`${base}/poll?channels=${channels.join(',')}&cursor=${cursor}`);
    expect(res.status).toBe(200);
    largestAnswer = Math.max(largestAnswer, Buffer.byteLength(res.body));
    const body = JSON.parse(res.body) as { events: { id: string }[]; cursor: string; more?: boolean };
    got.push(...body.events.map((e) => e.id));
    cursor = body.cursor;
    if (!body.more) break;
    expect(pages).toBeLessThan(TOTAL);
  }
  expect(largestAnswer).toBeLessThanOrEqual(MiB);
  expect(got).toEqual(ids);
});

test('GET /events (native SSE, 16 channels): the replay arrives page by page without the stream being cut as slow; every event once, in order', async () => {
  const { channels, ids, before } = await largest('big');
  const s = new RawStream(`${stack.outputs.SseUrl}?channels=${channels.join(',')}&lastEventId=${before}`);
  try {
    await s.until((x) => x.events().some((e) => e.event === 'ready') || x.ended, 30_000);
    expect(s.ended).toBe(false);
    expect(s.events().filter((e) => e.event !== 'ready' && e.event !== 'reset').map((e) => e.id)).toEqual(ids);
  } finally {
    s.close();
  }
});

const subscribeAll = async (url: string, channels: string[], before: number) => {
  const c = await connectWs(`${url}?ticket=${await ticketFor(redis, 'alice', channels, 'ws', deps().config)}`);
  open.push(c);
  for (const channel of channels) c.send({ action: 'subscribe', channel, since: String(before) });
  await c.until((x) => x.signals('subscribed').length === channels.length || x.closeCode !== undefined, 30_000, 'every subscribed frame');
  expect(c.closeCode).toBeUndefined();
  return c;
};

test('/live subscribe with since on 16 channels: paged by bytes (no 1013 for a reader that keeps up), every event once, in order per channel', async () => {
  const { channels, ids } = await largest('bigchat');
  const c = await subscribeAll(stack.outputs.LiveUrl, channels, Number(ids[0]) - 1);
  for (const ch of channels) expect(c.events(ch).map((e) => e.id)).toEqual(ids.filter((_, i) => channels[i % CHANNELS] === ch));
});

test('API Gateway subscribe with since on 16 channels: every event once, in order per channel', async () => {
  const { channels, ids } = await largest('bigchat');
  const c = await subscribeAll(stack.outputs.WebSocketUrl, channels, Number(ids[0]) - 1);
  await c.until((x) => x.events().length >= TOTAL, 30_000, 'every replayed event');
  for (const ch of channels) expect(c.events(ch).map((e) => e.id)).toEqual(ids.filter((_, i) => channels[i % CHANNELS] === ch));
});

/**
 * A reader that stops reading while its replay is written: the server must hold one page, wait for the socket to
 * drain, and go on when the reader reads again; it must not write the whole replay at once (the backlog then passes
 * MAX_QUEUED_BYTES, 1 MiB, and the stream is cut as a slow consumer, 1013 on /live).
 */
describe('a reader that pauses during its replay (12 MB of 32 KB events on 16 channels)', () => {
  const PAUSED_PER_CHANNEL = 24;
  const engineOf = () => (stack.sse as unknown as { engine: { streams: Set<Session>; sockets: Set<Session> } }).engine;
  const streamsOf = () => engineOf().streams;
  const socketsOf = () => engineOf().sockets;

  test('/events: the server waits with at most a page queued; nothing is cut as slow, and every event arrives once, in order', async () => {
    const { channels, ids, before } = await largest('big', PAUSED_PER_CHANNEL);
    const drops = stack.sse.metrics.slowConsumerDrops;
    const u = new URL(stack.outputs.SseUrl);
    const sock = connect(Number(u.port), u.hostname);
    sock.pause();
    let text = '';
    sock.setEncoding('utf8');
    sock.write(`GET ${u.pathname}?channels=${channels.join(',')}&lastEventId=${before} HTTP/1.1\r\nHost: ${u.host}\r\nAccept: text/event-stream\r\n\r\n`);
    try {
      // Either the server cut the stream (the whole replay at once), or it holds bytes it could not hand to the kernel.
      await eventually(() => stack.sse.metrics.slowConsumerDrops > drops || [...streamsOf()].some((s) => s.transport.queuedBytes() > 0), 20_000, 'the server to block on the paused reader');
      expect(stack.sse.metrics.slowConsumerDrops).toBe(drops);
      for (const s of streamsOf()) expect(s.transport.queuedBytes()).toBeLessThanOrEqual(MiB + 64 * 1024);
      sock.on('data', (c: string) => (text += c));
      sock.resume();
      await eventually(() => text.includes('event: ready'), 30_000, 'the whole replay and ready');
      expect([...text.matchAll(/^event: t\ndata: \{"channel":"[^"]*","id":"(\d+)"/gm)].map((m) => m[1])).toEqual(ids);
      expect(stack.sse.metrics.slowConsumerDrops).toBe(drops);
    } finally {
      sock.destroy();
    }
  });

  test('/live subscribe with since: the server waits with at most a page queued; no 1013, every event once, in order per channel', async () => {
    const { channels, ids, before } = await largest('bigchat', PAUSED_PER_CHANNEL);
    const drops = stack.sse.metrics.slowConsumerDrops;
    const c = await connectWs(`${stack.outputs.LiveUrl}?ticket=${await ticketFor(redis, 'alice', channels, 'ws', deps().config)}`);
    open.push(c);
    c.ws.pause();
    for (const channel of channels) c.send({ action: 'subscribe', channel, since: String(before) });
    await eventually(() => stack.sse.metrics.slowConsumerDrops > drops || [...socketsOf()].some((s) => s.transport.queuedBytes() > 0), 20_000, 'the server to block on the paused reader');
    expect(stack.sse.metrics.slowConsumerDrops).toBe(drops);
    for (const s of socketsOf()) expect(s.transport.queuedBytes()).toBeLessThanOrEqual(MiB + 64 * 1024);
    c.ws.resume();
    await c.until((x) => x.signals('subscribed').length === channels.length || x.closeCode !== undefined, 30_000, 'every subscribed frame');
    expect(c.closeCode).toBeUndefined();
    for (const ch of channels) expect(c.events(ch).map((e) => e.id)).toEqual(ids.filter((_, i) => channels[i % CHANNELS] === ch));
  });
});

test('a long poll collecting live events stops at the byte budget too: a burst of 32 KB events answers a page, "more", and the cursor of its last event', async () => {
  const envelope = (id: number) => JSON.stringify({ channel: 'big:x', id: String(id), type: 't', data: 'x'.repeat(32_000), ts: 1 });
  const server = createServer((_req, res) => {
    // REPLAY_MAX_EVENTS 1000, POLL_TIMEOUT_MS 5000, REPLAY_MAX_BYTES 100000: three of these events fit.
    const t = new PollTransport(res, { 'content-type': 'application/json' }, 1000, 5000, 100_000);
    t.ready(encodeCursor([1]), ['big:x'], false);
    // Ten events in one burst (one turn of the event loop: they would all join one answer), each with the cursor after it.
    for (let i = 2; i <= 11; i++) t.event(new LiveEvent('big:x', envelope(i)), encodeCursor([i]));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const res = await get(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    const body = JSON.parse(res.body) as { events: { id: string }[]; cursor: string; more?: boolean };
    expect(body.events.map((e) => e.id)).toEqual(['2', '3', '4']);
    expect(body).toMatchObject({ cursor: encodeCursor([4]), more: true });
    expect(Buffer.byteLength(res.body)).toBeLessThanOrEqual(100_000);
  } finally {
    server.close();
  }
});
