import pino from 'pino';
import type { HttpEvent, HttpResult } from '../../lambda/shared/http';
import { startLocalStack, type LocalStack } from '../../local/stack';
import { uid } from '../support/harness';

/**
 * The publish Lambda's 429 answers carry `Retry-After` (README "Errors"): the seconds until the
 * window that refused the event lets it through, the same number the message names. Through the
 * real handler factory of a local stack, over a real Redis.
 */

process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';

let stack: LocalStack;
beforeAll(async () => {
  stack = await startLocalStack({
    logger: pino({ level: 'silent' }),
    // Three events per minute, one new channel per hour, 70 KB retained per user and namespace (two 32 KB events).
    env: { USER_PUBLISH_PER_MINUTE: '3', USER_NEW_CHANNELS_PER_HOUR: '1', USER_RETAINED_BYTES: '70000', LOG_LEVEL: 'silent' },
  });
});
afterAll(() => stack.close());

/** `POST /publish` as the HTTP API's JWT authorizer hands it to the Lambda: the user is the token's `sub`. */
const publishAs = (sub: string, body: unknown): Promise<HttpResult> =>
  stack.handlers.publish({
    version: '2.0',
    routeKey: 'POST /publish',
    rawPath: '/publish',
    rawQueryString: '',
    headers: { 'content-type': 'application/json' },
    requestContext: { http: { method: 'POST', path: '/publish' }, authorizer: { jwt: { claims: { sub }, scopes: null } } },
    body: JSON.stringify(body),
    isBase64Encoded: false,
  } as unknown as HttpEvent);

/** The refusal's code, its Retry-After header and the seconds its message names. */
function refusal(r: HttpResult): { status: number; code: string; retryAfter: unknown; inMessage: number } {
  const { error } = JSON.parse(r.body!) as { error: { code: string; message: string } };
  const seconds = /retry in (\d+) s/.exec(error.message);
  return { status: r.statusCode, code: error.code, retryAfter: r.headers?.['retry-after'], inMessage: Number(seconds?.[1]) };
}

function expectRetryAfter(r: HttpResult, code: string, windowSeconds: number): void {
  const got = refusal(r);
  expect(got).toMatchObject({ status: 429, code, retryAfter: expect.stringMatching(/^\d+$/) });
  const after = Number(got.retryAfter);
  expect(after).toBeGreaterThanOrEqual(1);
  expect(after).toBeLessThanOrEqual(windowSeconds);
  expect(after).toBe(got.inMessage);
}

describe('POST /publish 429 answers carry Retry-After', () => {
  test('rate_limited: the seconds left in the per-minute window', async () => {
    const sub = `u-${uid()}`;
    const channel = `chat:${uid()}`;
    for (let i = 0; i < 3; i++) expect((await publishAs(sub, { channel, type: 't', data: i })).statusCode).toBe(202);
    expectRetryAfter(await publishAs(sub, { channel, type: 't', data: 3 }), 'rate_limited', 60);
  });

  test('channel_quota_exceeded: the seconds left in the per-hour window', async () => {
    const sub = `u-${uid()}`;
    expect((await publishAs(sub, { channel: `chat:${uid()}`, type: 't', data: 1 })).statusCode).toBe(202);
    expectRetryAfter(await publishAs(sub, { channel: `chat:${uid()}`, type: 't', data: 2 }), 'channel_quota_exceeded', 3600);
  });

  test('retained_bytes_exceeded: the seconds until the retained bytes are counted afresh (at most the history TTL)', async () => {
    const sub = `u-${uid()}`;
    const channel = `chat:${uid()}`;
    const big = 'x'.repeat(32_000);
    for (let i = 0; i < 2; i++) expect((await publishAs(sub, { channel, type: 't', data: big })).statusCode).toBe(202);
    expectRetryAfter(await publishAs(sub, { channel, type: 't', data: big }), 'retained_bytes_exceeded', 3600);
  });

  test('refusals without a window (400, 403) carry none', async () => {
    const r = await publishAs(`u-${uid()}`, { channel: 'scores:1', type: 't', data: 1 });
    expect(r.statusCode).toBe(403);
    expect(r.headers?.['retry-after']).toBeUndefined();
  });
});
