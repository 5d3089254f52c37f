import { LOCAL_IAM_ARN } from '../../local/http-api';
import { startLocalStack, type LocalStack } from '../../local/stack';
import { connectRedis, uid } from '../support/harness';
import { Keys } from '../../core/redis/keys';

/** The default prefix's key names (hash-tagged: see core/redis/keys.ts). */
const K = new Keys('rt:');

/**
 * An IAM-signed caller acts for any user, and HTTP APIs have no resource policies, so the handlers
 * trust only the IAM principals listed in TRUSTED_PRINCIPALS. The local front reports one fixed IAM
 * caller (LOCAL_IAM_ARN); here the list names another role, so that caller is an untrusted one.
 */
let stack: LocalStack;
beforeAll(async () => {
  stack = await startLocalStack({ env: { TRUSTED_PRINCIPALS: 'arn:aws:iam::000000000000:role/the-real-backend' } });
});
afterAll(() => stack.close());

const post = async (url: string, body: unknown) => {
  const r = await fetch(url, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  return { status: r.status, body: (await r.json()) as { error?: { code: string; message: string } } };
};

test('an IAM caller outside TRUSTED_PRINCIPALS cannot publish, mint tickets for a user or revoke: 403 forbidden naming the fix, nothing written', async () => {
  const redis = await connectRedis();
  try {
    const ch = `chat:${uid()}`;
    const base = stack.outputs.PublishUrl.replace(/\/publish$/, '');
    const pub = await post(stack.outputs.PublishUrl, { channel: ch, type: 'message', data: 1 });
    expect(pub.status).toBe(403);
    expect(pub.body.error).toEqual({ code: 'forbidden', message: expect.stringContaining(`${LOCAL_IAM_ARN} is not a trusted backend`) });
    expect(pub.body.error?.message).toContain('trustedPrincipals');
    expect(await redis.exists(K.lastId(ch), K.history(ch))).toBe(0);

    const ticket = await post(`${base}/backend/tickets`, { sub: 'alice', channels: [ch] });
    expect(ticket.status).toBe(403);
    expect(ticket.body.error?.code).toBe('forbidden');

    const revoke = await post(`${base}/revoke`, { sub: 'alice' });
    expect(revoke.status).toBe(403);
    expect(await redis.exists('rt:rv:alice')).toBe(0);
  } finally {
    redis.disconnect();
  }
});

test('users (JWT) are not affected by the list', async () => {
  const r = await fetch(stack.outputs.TicketUrl, { method: 'POST', body: JSON.stringify({ channels: ['chat:x'] }), headers: { 'content-type': 'application/json', 'x-local-user': 'alice' } });
  expect(r.status).toBe(201);
});
