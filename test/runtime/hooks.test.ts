/**
 * Hooks (issue 25): a namespace's subscribe hook asked at ticket time (allow, deny, narrow) and publish hook asked for
 * client publishes on `/live` and API Gateway (accept, reject with a code, replace `data`), each with a timeout and a
 * failure policy. The hooks run behind the local stand-in of Lambda's Invoke API (local/lambda-invoke.ts), called by
 * the same signed `Invoke` as on AWS (core/aws/lambda-invoke.ts, our signer; the stand-in checks the signature with
 * `@smithy/signature-v4`). A hook that must time out never answers (released at the end), so no test waits on a clock.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { LambdaInvoker } from '../../core/aws/lambda-invoke';
import { coreConfigFromEnv, DEFAULT_NAMESPACES } from '../../core/config';
import { startLocalStack, type LocalStack } from '../../local/stack';
import { RealtimeClientError, type Client, type TicketAnswer } from '../../client/src/index';
import { localTickets, nodeClient, publish, until } from '../support/client-kit';
import { uid } from '../support/harness';

const NAMESPACES = {
  ...DEFAULT_NAMESPACES,
  room: { subscribe: 'authenticated', publish: 'authenticated', hooks: { subscribe: { function: 'rooms' } } },
  slowroom: { subscribe: 'authenticated', hooks: { subscribe: { function: 'hang', timeoutMs: 200 } } },
  brokenroom: { subscribe: 'authenticated', hooks: { subscribe: { function: 'broken' } } },
  mod: { subscribe: 'authenticated', publish: 'authenticated', hooks: { publish: { function: 'moderate', timeoutMs: 300 } } },
  web: { subscribe: 'authenticated', publish: 'authenticated', hooks: { publish: { function: 'webhook' } } },
  lenient: { subscribe: 'authenticated', publish: 'authenticated', hooks: { publish: { function: 'hang', timeoutMs: 200, onError: 'allow' } } },
};

/** The hook that never answers until the suite ends. */
let release: () => void = () => undefined;
const hung = new Promise<void>((resolve) => (release = resolve));

const moderate = (event: unknown) => {
  const e = event as { data: { text: string } };
  if (e.data.text.includes('spam')) return { result: 'reject', code: 'spam', message: 'No spam here.' };
  if (e.data.text.includes('hang')) return hung.then(() => ({ result: 'accept' }));
  if (e.data.text.includes('darn')) return { result: 'accept', data: { text: e.data.text.replace('darn', '****'), moderated: true } };
  return { result: 'accept' };
};
const rooms = (event: unknown) => {
  const e = event as { channels: string[] };
  const open = e.channels.filter((c) => c.startsWith('room:open-'));
  return open.length ? { result: 'allow', channels: open } : { result: 'deny', message: 'Members only.' };
};

let stack: LocalStack;
let webhook: Server;
const webhookCalls: unknown[] = [];
beforeAll(async () => {
  // An HTTP endpoint as a hook: upper-cases the text.
  webhook = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const e = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      webhookCalls.push(e);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ result: 'accept', data: { text: String(e.data.text).toUpperCase() } }));
    });
  });
  await new Promise<void>((r) => webhook.listen(0, '127.0.0.1', r));
  stack = await startLocalStack({
    logger: pino({ level: 'silent' }),
    env: { NAMESPACES_JSON: JSON.stringify(NAMESPACES), LOG_LEVEL: 'silent', ANON_REQUESTS_PER_MINUTE: '0' },
    functions: {
      rooms,
      moderate,
      hang: () => hung,
      broken: () => {
        throw new Error('the hook crashed');
      },
      webhook: `http://127.0.0.1:${(webhook.address() as AddressInfo).port}/`,
    },
  });
}, 30_000);
afterAll(async () => {
  release();
  await stack?.close();
  await new Promise((r) => webhook?.close(r));
});

const ticket = (user: string, channels: string[], transport = 'sse') =>
  fetch(stack.outputs.TicketUrl, { method: 'POST', headers: { 'content-type': 'application/json', 'x-local-user': user }, body: JSON.stringify({ channels, transport }) });
const historyOf = async (channel: string) => {
  const r = await fetch(`${stack.outputs.PublishUrl.replace(/\/publish$/, '/history')}?channel=${channel}`);
  return ((await r.json()) as { events: { data: unknown }[] }).events.map((e) => e.data);
};

describe('subscribe hook, at ticket time', () => {
  test('allow: the ticket grants the channels; the hook was asked with the user, channels, transport', async () => {
    const ch = `room:open-${uid()}`;
    const r = await ticket('alice', [ch]);
    expect(r.status).toBe(201);
    expect(((await r.json()) as { channels: string[] }).channels).toEqual([ch]);
    expect(stack.lambdaInvoke.invocations.at(-1)).toEqual({ name: 'rooms', payload: { hook: 'subscribe', namespace: 'room', channels: [ch], sub: 'alice', byBackend: false, transport: 'sse' } });
  });

  test('narrow: the channels the hook dropped are not granted; namespaces without a hook are kept', async () => {
    const open = `room:open-${uid()}`;
    const closed = `room:closed-${uid()}`;
    const chat = `chat:${uid()}`;
    const r = await ticket('alice', [open, closed, chat]);
    expect(r.status).toBe(201);
    const body = (await r.json()) as { channels: string[]; sseUrl: string };
    expect(body.channels).toEqual([chat, open].sort());
    // The grant is what the ticket holds: a stream naming the dropped channel is refused.
    const refused = await fetch(`${stack.outputs.SseUrl}?channels=${closed}&ticket=${new URL(body.sseUrl).searchParams.get('ticket')}`);
    expect(refused.status).toBe(403);
  });

  test('deny: 403 channel_not_granted with the app message', async () => {
    const r = await ticket('alice', [`room:closed-${uid()}`]);
    expect(r.status).toBe(403);
    expect(await r.json()).toEqual({ error: { code: 'channel_not_granted', message: expect.stringMatching(/Members only\./) } });
  });

  test('time out and function error: fail closed, 503 unavailable, no ticket', async () => {
    const slow = await ticket('alice', [`slowroom:${uid()}`]);
    expect(slow.status).toBe(503);
    expect(await slow.json()).toEqual({ error: { code: 'unavailable', message: expect.stringMatching(/did not answer within 200 ms/) } });
    const broken = await ticket('alice', [`brokenroom:${uid()}`]);
    expect(broken.status).toBe(503);
    expect(((await broken.json()) as { error: { message: string } }).error.message).toMatch(/subscribe hook of namespace "brokenroom" failed/);
  });
});

describe.each([
  ['/live', true],
  ['API Gateway', false],
] as const)('publish hook on %s', (_name, live) => {
  const clients: Client[] = [];
  afterEach(() => clients.splice(0).forEach((c) => c.close()));
  const wsClient = () => {
    const rewrite = (t: TicketAnswer) => (live ? { ...t, wsUrl: `${stack.outputs.LiveUrl}?ticket=${t.ticket}` } : t);
    const c = nodeClient({ ticket: localTickets(stack.outputs.TicketUrl, 'alice', rewrite), transports: ['ws'] });
    clients.push(c);
    return c;
  };
  const open = async (c: Client, ch: string, got: unknown[] = []) => {
    c.subscribe(ch, { onEvent: (e) => void got.push(e.data) });
    await until(() => c.state === 'open', 'open');
    return got;
  };

  test('accept: published unchanged; transform: subscribers and history get the replaced data', async () => {
    const ch = `mod:${uid()}`;
    const c = wsClient();
    const got = await open(c, ch);
    await c.publish(ch, 'msg', { text: 'hello' });
    await c.publish(ch, 'msg', { text: 'oh darn' });
    await until(() => got.length === 2, 'both events');
    expect(got).toEqual([{ text: 'hello' }, { text: 'oh ****', moderated: true }]);
    expect(await historyOf(ch)).toEqual(got);
    expect(stack.lambdaInvoke.invocations.filter((i) => (i.payload as { channel?: string }).channel === ch)).toEqual([
      { name: 'moderate', payload: { hook: 'publish', namespace: 'mod', channel: ch, type: 'msg', data: { text: 'hello' }, sub: 'alice' } },
      { name: 'moderate', payload: { hook: 'publish', namespace: 'mod', channel: ch, type: 'msg', data: { text: 'oh darn' }, sub: 'alice' } },
    ]);
  });

  test('reject: publish_rejected with the message, nothing published', async () => {
    const ch = `mod:${uid()}`;
    const c = wsClient();
    await open(c, ch);
    const err = await c.publish(ch, 'msg', { text: 'buy spam' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RealtimeClientError);
    expect(err).toMatchObject({ code: 'publish_rejected', message: 'No spam here.' });
    expect(await historyOf(ch)).toEqual([]);
  });

  test('time out: fail closed (unavailable, nothing published); a namespace with onError allow publishes', async () => {
    const ch = `mod:${uid()}`;
    const c = wsClient();
    await open(c, ch);
    await expect(c.publish(ch, 'msg', { text: 'hang on' })).rejects.toMatchObject({ code: 'unavailable', message: expect.stringMatching(/publish hook of namespace "mod" did not answer within 300 ms/) });
    expect(await historyOf(ch)).toEqual([]);
    const lenient = `lenient:${uid()}`;
    await expect(c.publish(lenient, 'msg', { text: 'hang on' })).resolves.toMatchObject({ channel: lenient });
    expect(await historyOf(lenient)).toEqual([{ text: 'hang on' }]);
  });

  test('an HTTP endpoint as the hook replaces data', async () => {
    const ch = `web:${uid()}`;
    const c = wsClient();
    await open(c, ch);
    await c.publish(ch, 'msg', { text: 'quiet' });
    expect(await historyOf(ch)).toEqual([{ text: 'QUIET' }]);
  });
});

test('backends are not asked: POST /publish to a hooked namespace publishes as sent', async () => {
  const ch = `mod:${uid()}`;
  const before = stack.lambdaInvoke.invocations.length;
  await publish(stack.outputs.PublishUrl, ch, { text: 'spam from the backend' }, 'msg');
  expect(stack.lambdaInvoke.invocations.length).toBe(before);
  expect(await historyOf(ch)).toEqual([{ text: 'spam from the backend' }]);
});

test('the Invoke stand-in refuses a request signed with other credentials (403), as Lambda does', async () => {
  const wrong = new LambdaInvoker({ credentials: async () => ({ accessKeyId: 'AKIDLOCALLAMBDA', secretAccessKey: 'not-the-secret' }), region: 'us-east-1', endpoint: new URL(stack.lambdaInvoke.url) });
  try {
    await expect(wrong.invoke('rooms', '{"channels":[]}', 1000)).rejects.toThrow(/answered 403 InvalidSignatureException/);
    const right = new LambdaInvoker({ credentials: async () => ({ accessKeyId: 'AKIDLOCALLAMBDA', secretAccessKey: 'local-lambda-secret' }), region: 'us-east-1', endpoint: new URL(stack.lambdaInvoke.url) });
    // A full ARN with a qualifier names the function too (its segments encoded twice in the signature).
    await expect(right.invoke('arn:aws:lambda:us-east-1:123456789012:function:rooms:live', '{"channels":["room:open-1"]}', 1000)).resolves.toEqual({ result: 'allow', channels: ['room:open-1'] });
    await expect(right.invoke('nope', '{}', 1000)).rejects.toThrow(/404 ResourceNotFoundException/);
    right.destroy();
  } finally {
    wrong.destroy();
  }
});

describe('hook settings (NAMESPACES_JSON)', () => {
  const parse = (policy: unknown) => coreConfigFromEnv({ REDIS_URL: 'redis://127.0.0.1:6379', NAMESPACES_JSON: JSON.stringify({ ns: policy }) }).namespaces.ns;
  test('defaults: timeoutMs 1000, onError deny', () => {
    expect(parse({ subscribe: 'authenticated', hooks: { publish: { function: 'moderate' } } }).hooks).toEqual({ publish: { function: 'moderate', timeoutMs: 1000, onError: 'deny' } });
  });
  test('refused with one line: a subscribe hook on a public namespace, a timeout out of range, a function that is no name or ARN', () => {
    expect(() => parse({ subscribe: 'public', hooks: { subscribe: { function: 'rooms' } } })).toThrow(/NAMESPACES_JSON\.ns\.hooks\.subscribe: a subscribe hook needs tickets/);
    expect(() => parse({ subscribe: 'authenticated', hooks: { publish: { function: 'm', timeoutMs: 20_000 } } })).toThrow(/NAMESPACES_JSON\.ns\.hooks\.publish\.timeoutMs/);
    expect(() => parse({ subscribe: 'authenticated', hooks: { publish: { function: 'a b' } } })).toThrow(/a Lambda function name or ARN/);
  });
});

test('client.publish backend events carry the data the publish hook replaced (what was published)', async () => {
  const namespaces = {
    ...DEFAULT_NAMESPACES,
    modev: { subscribe: 'authenticated', publish: 'authenticated', historySize: 10, historyTtlSeconds: 600, clientEvents: true, hooks: { publish: { function: 'moderate', timeoutMs: 1000, onError: 'deny' } } },
  } as const;
  const own = await startLocalStack({ logger: pino({ level: 'silent' }), backendEvents: { timers: false }, core: { keyPrefix: `h${uid()}:`, namespaces }, env: { LOG_LEVEL: 'silent' }, functions: { moderate } });
  const c = nodeClient({ ticket: localTickets(own.outputs.TicketUrl, 'alice'), transports: ['ws'] });
  try {
    const ch = `modev:${uid()}`;
    c.subscribe(ch, { onEvent: () => undefined });
    await until(() => c.state === 'open', 'open');
    const r = await c.publish(ch, 'msg', { text: 'oh darn' });
    await own.sse.events!.relayOnce();
    expect(own.eventBridge!.ofType('client.publish').map((e) => [e.detail.eventId, e.detail.data])).toEqual([[r.id, { text: 'oh ****', moderated: true }]]);
  } finally {
    c.close();
    await own.close();
  }
});
