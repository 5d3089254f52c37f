import type Redis from 'ioredis';
import pino from 'pino';
import { DEFAULT_NAMESPACES } from '../../core/config';
import { LOCAL_IAM_ARN } from '../../local/http-api';
import type { LocalStack } from '../../local/stack';
import { connectRedis, uid } from '../support/harness';
import { connectWs, upgradeStatus, type WsClient } from './ws-support';
import { Keys } from '../../core/redis/keys';

/** The default prefix's key names (hash-tagged: see core/redis/keys.ts). */
const K = new Keys('rt:');

/**
 * Two local stacks in one process, one Redis, different settings: each answers by its own config.
 * Stack A is configured through `env` (the environment's vocabulary), stack B through config
 * objects. Neither writes `process.env`.
 */

process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';

const run = uid();
const prefixA = `a${run}:`;
const prefixB = `b${run}:`;
const policy = { subscribe: 'authenticated', publish: 'authenticated', historySize: 10, historyTtlSeconds: 600 } as const;
const OTHER_BACKEND = 'arn:aws:iam::000000000000:role/another-backend';

let a: LocalStack;
let b: LocalStack;
let redis: Redis;
let envBefore: Record<string, string | undefined>;
const open: WsClient[] = [];

beforeAll(async () => {
  redis = await connectRedis();
  envBefore = { ...process.env };
  const { startLocalStack } = await import('../../local/stack');
  a = await startLocalStack({
    logger: pino({ level: 'silent' }),
    env: { KEY_PREFIX: prefixA, NAMESPACES_JSON: JSON.stringify({ ...DEFAULT_NAMESPACES, alpha: policy }), TRUSTED_PRINCIPALS: OTHER_BACKEND, WS_GONE_GRACE_MS: '0', LOG_LEVEL: 'silent' },
  });
  b = await startLocalStack({
    logger: pino({ level: 'silent' }),
    env: { LOG_LEVEL: 'silent' },
    core: { keyPrefix: prefixB, namespaces: { ...DEFAULT_NAMESPACES, beta: policy } },
    lambda: { wsGoneGraceMs: 0 },
  });
});
afterEach(() => {
  for (const c of open.splice(0)) c.close();
});
afterAll(async () => {
  await a?.close();
  await b?.close();
  redis.disconnect();
});

const post = async (url: string, body: unknown, headers: Record<string, string> = {}) => {
  const r = await fetch(url, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', ...headers } });
  return { status: r.status, body: (await r.json()) as { error?: { code: string; message: string }; ticket?: string; wsUrl?: string; id?: string } };
};
const base = (s: LocalStack) => s.outputs.PublishUrl.replace(/\/publish$/, '');

test('starting the stacks wrote nothing to process.env', () => {
  expect(process.env).toEqual(envBefore);
  for (const k of ['SSE_URL', 'WS_URL', 'WS_MANAGEMENT_ENDPOINT', 'TRUSTED_PRINCIPALS', 'KEY_PREFIX', 'NAMESPACES_JSON']) expect(process.env[k]).toBe(envBefore[k]);
});

test('TRUSTED_PRINCIPALS: A trusts another backend (the local IAM caller gets 403), B the local one (202)', async () => {
  const ch = `chat:${uid()}`;
  const onA = await post(a.outputs.PublishUrl, { channel: ch, type: 'm', data: 1 });
  expect(onA.status).toBe(403);
  expect(onA.body.error?.message).toContain(`${LOCAL_IAM_ARN} is not a trusted backend`);
  const onB = await post(b.outputs.PublishUrl, { channel: ch, type: 'm', data: 1 });
  expect(onB.status).toBe(202);
  expect((await post(`${base(a)}/revoke`, { sub: 'alice' })).status).toBe(403);
  expect((await post(`${base(b)}/backend/tickets`, { sub: 'alice', channels: [ch] })).status).toBe(201);
});

test('namespaces and key prefixes: each stack knows only its own namespace and writes under its own prefix', async () => {
  const alpha = `alpha:${uid()}`;
  const beta = `beta:${uid()}`;
  const asAlice = { 'x-local-user': 'alice' };
  expect((await post(a.outputs.TicketUrl, { channels: [alpha] }, asAlice)).status).toBe(201);
  expect((await post(a.outputs.TicketUrl, { channels: [beta] }, asAlice)).body.error?.code).toBe('invalid_channel');
  expect((await post(b.outputs.TicketUrl, { channels: [beta] }, asAlice)).status).toBe(201);
  expect((await post(b.outputs.TicketUrl, { channels: [alpha] }, asAlice)).body.error?.code).toBe('invalid_channel');

  const pub = await post(b.outputs.PublishUrl, { channel: beta, type: 'm', data: 'b' });
  expect(pub.status).toBe(202);
  expect(await redis.exists(new Keys(prefixB).lastId(beta))).toBe(1);
  expect(await redis.exists(new Keys(prefixA).lastId(beta), K.lastId(beta))).toBe(0);
});

test('WebSockets: each ticket points at its own gateway, and each stack fans out through its own management API', async () => {
  const ch = `chat:${uid()}`;
  const asBob = { 'x-local-user': 'bob' };
  const tA = await post(a.outputs.TicketUrl, { channels: [ch], transport: 'ws' }, asBob);
  const tB = await post(b.outputs.TicketUrl, { channels: [ch], transport: 'ws' }, asBob);
  expect(tA.body.wsUrl?.startsWith(a.outputs.WebSocketUrl)).toBe(true);
  expect(tB.body.wsUrl?.startsWith(b.outputs.WebSocketUrl)).toBe(true);
  // A's ticket lives under A's prefix: B's gateway refuses it.
  expect(await upgradeStatus(`${b.outputs.WebSocketUrl}?ticket=${tA.body.ticket}`)).toBe(403);
  const cA = await connectWs(tA.body.wsUrl!);
  const cB = await connectWs(tB.body.wsUrl!);
  open.push(cA, cB);
  // Each client publishes on its own stack; only that stack's subscribers get it.
  await cA.request({ action: 'publish', channel: ch, type: 'm', data: 'from-a' }, 'published');
  await cB.request({ action: 'publish', channel: ch, type: 'm', data: 'from-b' }, 'published');
  await cA.until((c) => c.events(ch).length === 1, 5000, 'A\'s event');
  await cB.until((c) => c.events(ch).length === 1, 5000, 'B\'s event');
  // Nothing crosses over: give a stray post time to arrive, then look again.
  await new Promise((r) => setTimeout(r, 200));
  expect([cA.events(ch).map((e) => e.data), cB.events(ch).map((e) => e.data)]).toEqual([['from-a'], ['from-b']]);
});
