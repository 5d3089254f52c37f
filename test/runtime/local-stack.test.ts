import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { connect } from 'node:net';
import { join } from 'node:path';
import { EventSource } from 'eventsource';
import type { HttpEvent } from '../../lambda/shared/http';
import { LOCAL_IAM_ARN } from '../../local/http-api';
import { startLocalStack, type LocalStack } from '../../local/stack';
import { cookieFetch, eventually, uid } from '../support/harness';

let stack: LocalStack;
beforeAll(async () => {
  stack = await startLocalStack();
});
afterAll(() => stack.close());

const post = async (url: string, body: string, headers: Record<string, string> = {}) => {
  const r = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });
  // Response bodies are read field by field in assertions; `any` keeps those reads short.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  return { status: r.status, body: (await r.json()) as Record<string, any> };
};
const asAlice = { 'x-local-user': 'alice' };

describe('POST /tickets through the HTTP API stand-in and the real handler', () => {
  test('201 with the ticket, its expiry and the SSE URL; the SSE URL opens a stream that gets POST /publish events', async () => {
    const ch = `chat:${uid()}`;
    const r = await post(stack.outputs.TicketUrl, JSON.stringify({ channels: [ch] }), asAlice);
    expect(r.status).toBe(201);
    expect(r.body).toEqual({ ticket: expect.stringMatching(/^[\w-]{43}$/), expiresAt: expect.any(String), channels: [ch], transport: 'sse', sseUrl: expect.any(String), wsUrl: null });
    const ttl = Date.parse(r.body.expiresAt) - Date.now();
    expect(ttl).toBeGreaterThan(25_000);
    expect(ttl).toBeLessThanOrEqual(30_000);
    expect(r.body.sseUrl.startsWith(`${stack.outputs.SseUrl}?channels=`)).toBe(true);

    const es = new EventSource(r.body.sseUrl, { fetch: cookieFetch().fetch });
    const got: unknown[] = [];
    let ready = false;
    es.addEventListener('ready', () => (ready = true));
    es.addEventListener('message', (e) => got.push(JSON.parse(e.data).data));
    await eventually(() => ready, 5000, 'ready');
    const pub = await post(stack.outputs.PublishUrl, JSON.stringify({ channel: ch, type: 'message', data: { text: 'hi' } }));
    expect(pub).toEqual({ status: 202, body: { id: expect.stringMatching(/^\d+$/), duplicate: false } });
    await eventually(() => got.length === 1, 5000, 'event');
    expect(got).toEqual([{ text: 'hi' }]);
    es.close();
  });

  test('transport ws: a wsUrl, no sseUrl', async () => {
    const r = await post(stack.outputs.TicketUrl, JSON.stringify({ channels: ['chat:x'], transport: 'ws' }), asAlice);
    expect(r.status).toBe(201);
    expect(r.body.sseUrl).toBeNull();
    expect(r.body.wsUrl).toBe(`${stack.outputs.WebSocketUrl}?ticket=${r.body.ticket}`);
  });

  test.each([
    ['no user (the JWT authorizer refuses)', '{"channels":["chat:x"]}', {}, 401, undefined],
    ['malformed JSON', '{"channels":', asAlice, 400, 'invalid_json'],
    ['a JSON array', '["chat:x"]', asAlice, 400, 'invalid_json'],
    ['empty body', '', asAlice, 400, 'invalid_json'],
    ['invalid channel name', '{"channels":["Bad Name"]}', asAlice, 400, 'invalid_channel'],
    ['channels missing', '{}', asAlice, 400, 'invalid_channel'],
    ['too many channels', JSON.stringify({ channels: Array.from({ length: 17 }, (_, i) => `chat:${i}`) }), asAlice, 400, 'too_many_channels'],
    ["another user's private channel", '{"channels":["user:bob"]}', asAlice, 403, 'channel_not_granted'],
    ['unknown transport', '{"channels":["chat:x"],"transport":"smoke"}', asAlice, 400, 'bad_request'],
  ])('%s: %s', async (_what, body, headers, status, code) => {
    const r = await post(stack.outputs.TicketUrl, body, headers as Record<string, string>);
    expect(r.status).toBe(status);
    if (code) expect(r.body).toEqual({ error: { code, message: expect.any(String) } });
  });

  test('wrong content type: 415', async () => {
    const r = await post(stack.outputs.TicketUrl, 'channels=chat:x', { ...asAlice, 'content-type': 'application/x-www-form-urlencoded' });
    expect(r).toEqual({ status: 415, body: { error: { code: 'unsupported_media_type', message: expect.any(String) } } });
  });

  test('IAM-signed backend naming the user: ticket for that user; without "sub": 400', async () => {
    const event = (body: unknown) =>
      ({
        version: '2.0',
        routeKey: 'POST /tickets',
        rawPath: '/tickets',
        rawQueryString: '',
        headers: { 'content-type': 'application/json' },
        requestContext: { http: { method: 'POST', path: '/tickets' }, authorizer: { iam: { userArn: LOCAL_IAM_ARN } } },
        body: JSON.stringify(body),
        isBase64Encoded: false,
      }) as unknown as HttpEvent;
    const ticketHandler = stack.handlers.tickets;
    const ok = await ticketHandler(event({ sub: 'bob', channels: ['user:bob'] }));
    expect(ok.statusCode).toBe(201);
    expect(JSON.parse(ok.body!).channels).toEqual(['user:bob']);
    const bad = await ticketHandler(event({ channels: ['user:bob'] }));
    expect(bad.statusCode).toBe(400);
    expect(JSON.parse(bad.body!).error.code).toBe('bad_request');
  });
});

describe('POST /publish through the HTTP API stand-in and the real handler', () => {
  test('idempotencyKey: the retry answers the first id with duplicate: true', async () => {
    const body = JSON.stringify({ channel: `scores:${uid()}`, type: 'goal', data: 1, idempotencyKey: 'k-1' });
    const a = await post(stack.outputs.PublishUrl, body);
    const b = await post(stack.outputs.PublishUrl, body);
    expect(a.status).toBe(202);
    expect(b).toEqual({ status: 202, body: { id: a.body.id, duplicate: true } });
  });

  test.each([
    ['malformed JSON', '{"channel":"scores:1",', 400, 'invalid_json'],
    ['invalid channel', '{"channel":"scores","type":"t","data":1}', 400, 'invalid_channel'],
    ['unknown namespace', '{"channel":"nope:1","type":"t","data":1}', 400, 'invalid_channel'],
    ['bad type', '{"channel":"scores:1","type":"a b","data":1}', 400, 'invalid_type'],
    ['data missing', '{"channel":"scores:1","type":"t"}', 400, 'bad_request'],
    ['oversize payload', JSON.stringify({ channel: 'scores:1', type: 't', data: 'x'.repeat(40_000) }), 413, 'payload_too_large'],
  ])('%s: %s %s', async (_what, body, status, code) => {
    expect(await post(stack.outputs.PublishUrl, body)).toEqual({ status, body: { error: { code, message: expect.any(String) } } });
  });
});

describe('npm run dev', () => {
  test('prints the endpoints, writes them in the cdk outputs shape, serves a round trip, stops cleanly', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rt-dev-'));
    const file = join(dir, 'outputs.json');
    const proc = spawn(process.execPath, ['--import', 'tsx', 'local/dev.ts', '--port', '0', '--sse-port', '0', '--ws-port', '0', '--outputs-file', file], {
      // No REDIS_URL: the local stack starts its own redis-server.
      env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'REDIS_URL')), LOG_LEVEL: 'silent' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let redisEndpoint = '';
    proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
    proc.stderr.on('data', (c: Buffer) => (out += c.toString()));
    try {
      await eventually(() => existsSync(file) && out.includes('WebSocketUrl'), 20_000, `dev to start: ${out}`);
      const outputs = JSON.parse(readFileSync(file, 'utf8'));
      expect(Object.keys(outputs)).toEqual(['Realtime-local']);
      const o = outputs['Realtime-local'];
      redisEndpoint = o.RedisEndpoint;
      expect(Object.keys(o)).toEqual(expect.arrayContaining(['TicketUrl', 'SseUrl', 'PollUrl', 'WebSocketUrl', 'PublishUrl', 'RedisEndpoint']));
      for (const k of ['TicketUrl', 'SseUrl', 'WebSocketUrl', 'PublishUrl']) expect(out).toContain(o[k]);
      expect(out).toContain('(private redis-server)');
      const t = await post(o.TicketUrl, '{"channels":["chat:lobby"]}', asAlice);
      expect(t.status).toBe(201);
      const r = await post(o.PublishUrl, '{"channel":"chat:lobby","type":"message","data":{"text":"hello"}}');
      expect(r.status).toBe(202);
      // The printed round trips use the demo page's chat channel.
      const demoChat = /params\.get\('chat'\) \|\| '([^']+)'/.exec(readFileSync(join(__dirname, '../../client/demo/app.js'), 'utf8'))![1];
      expect(out).toContain(`"channels":["${demoChat}"]`);
      expect(out).not.toContain('require("ws")');
      // The printed WebSocket one-liner, run as printed in a directory outside the repo (no node_modules): it publishes and hears the answer.
      const lines = out.split('\n');
      const from = lines.findIndex((l) => l.startsWith('WebSocket ('));
      const snippet = lines.slice(from + 2, lines.findIndex((l, i) => i > from && l.trim().startsWith('(the ticket')));
      expect(snippet.join('\n')).toContain(demoChat);
      // Its own process group, so the node it starts ends with it.
      const sh = spawn('bash', ['-c', snippet.join('\n')], { cwd: dir, env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      let wsOut = '';
      sh.stdout.on('data', (c: Buffer) => (wsOut += c.toString()));
      sh.stderr.on('data', (c: Buffer) => (wsOut += c.toString()));
      try {
        await eventually(() => wsOut.includes('"type":"published"'), 20_000, `the one-liner's published answer: ${wsOut}`);
        expect(wsOut).toContain(`"channel":"${demoChat}"`);
      } finally {
        process.kill(-sh.pid!, 'SIGKILL');
      }
    } finally {
      const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
      proc.kill('SIGINT');
      expect(await exited).toBe(0);
    }
    // Its private redis-server went with it.
    const [host, port] = redisEndpoint.split(':');
    const refused = await new Promise<boolean>((resolve) => {
      const s = connect(Number(port), host);
      s.once('connect', () => {
        s.destroy();
        resolve(false);
      });
      s.once('error', () => resolve(true));
    });
    expect(refused).toBe(true);
  }, 40_000);
});
