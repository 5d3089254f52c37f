import { createHash, createHmac } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignatureV4 } from '@smithy/signature-v4';
import { ManagementPoster } from '../../core/management';
import { signJsonPost, SqsFifoQueue } from '../../core/sqs';

/**
 * The fan-out's own AWS clients: the lean PostToConnection signer and the SQS SendMessageBatch
 * sender. Their SigV4 signatures are checked against the AWS SDK's signer (@smithy/signature-v4)
 * on the exact requests they sent to a real local server; the SQS sender against a local stand-in
 * that answers SQS's JSON protocol, with entry failures by count.
 */

class Sha256 {
  private readonly h;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    const key = secret === undefined || typeof secret === 'string' ? secret : Buffer.from(ArrayBuffer.isView(secret) ? new Uint8Array(secret.buffer, secret.byteOffset, secret.byteLength) : new Uint8Array(secret));
    this.h = key ? createHmac('sha256', key) : createHash('sha256');
  }
  update(d: string | ArrayBuffer | ArrayBufferView): void {
    this.h.update(typeof d === 'string' ? d : ArrayBuffer.isView(d) ? new Uint8Array(d.buffer, d.byteOffset, d.byteLength) : new Uint8Array(d));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.h.digest());
  }
  reset(): void {}
}

const NOW = new Date('2026-11-29T09:00:00.000Z');
const CREDS = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY', sessionToken: 'session-token' };

interface Seen {
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
}

async function serve(answer: (seen: Seen) => { status: number; body?: string; headers?: Record<string, string> }): Promise<{ server: Server; base: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const s = { path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      seen.push(s);
      const a = answer(s);
      res.writeHead(a.status, a.headers ?? {});
      res.end(a.body ?? '');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

async function sdkAuthorization(service: string, region: string, seen: Seen, signed: string[]): Promise<string> {
  const signer = new SignatureV4({ service, region, credentials: CREDS, sha256: Sha256, applyChecksum: false });
  const headers: Record<string, string> = {};
  for (const h of signed) if (h !== 'x-amz-date' && h !== 'x-amz-security-token') headers[h] = String(seen.headers[h]);
  const out = await signer.sign({ method: 'POST', protocol: 'http:', hostname: '127.0.0.1', path: seen.path.split('?')[0], headers, body: seen.body }, { signingDate: NOW });
  return String(out.headers.authorization);
}

describe('lean PostToConnection', () => {
  test('signature: the same as the AWS SDK signer for the request it sent (session token, a connection id needing escapes)', async () => {
    const { server, base, seen } = await serve(() => ({ status: 200 }));
    const poster = new ManagementPoster(`${base}/prod`, { region: 'eu-west-1', credentials: async () => CREDS, now: () => NOW });
    try {
      await poster.postToConnection('Ab1=+/x', Buffer.from('{"hello":"world"}'));
      expect(seen[0].path).toBe('/prod/@connections/Ab1%3D%2B%2Fx');
      const auth = String(seen[0].headers.authorization);
      const signed = /SignedHeaders=([^,]+)/.exec(auth)![1].split(';');
      expect(signed).toEqual(['host', 'x-amz-date', 'x-amz-security-token']);
      expect(auth).toBe(await sdkAuthorization('execute-api', 'eu-west-1', seen[0], signed));
    } finally {
      poster.destroy();
      server.close();
    }
  });

  test('errors carry the SDK shape: 410 GoneException, 429 LimitExceededException with their status', async () => {
    let n = 0;
    const { server, base } = await serve(() =>
      ++n === 1
        ? { status: 410, headers: { 'x-amzn-errortype': 'GoneException', 'content-type': 'application/json' }, body: '{"message":"gone"}' }
        : { status: 429, headers: { 'x-amzn-errortype': 'LimitExceededException:http://internal', 'content-type': 'application/json' }, body: '{"message":"Rate exceeded"}' },
    );
    const poster = new ManagementPoster(`${base}/prod`, { region: 'eu-west-1', credentials: async () => CREDS });
    try {
      await expect(poster.postToConnection('a', Buffer.from('x'))).rejects.toMatchObject({ name: 'GoneException', $metadata: { httpStatusCode: 410 } });
      await expect(poster.postToConnection('a', Buffer.from('x'))).rejects.toMatchObject({ name: 'LimitExceededException', $metadata: { httpStatusCode: 429 }, message: 'Rate exceeded' });
    } finally {
      poster.destroy();
      server.close();
    }
  });
});

describe('SQS FIFO sender', () => {
  test('signature of SendMessageBatch: the same as the AWS SDK signer', async () => {
    const { server, base, seen } = await serve(() => ({ status: 200, body: '{"Successful":[]}' }));
    try {
      const body = '{"QueueUrl":"q"}';
      const host = new URL(base).host;
      const headers = signJsonPost(host, 'AmazonSQS.SendMessageBatch', body, 'eu-west-1', 'sqs', CREDS, NOW);
      await fetch(base + '/', { method: 'POST', headers, body });
      const signed = /SignedHeaders=([^,]+)/.exec(headers.authorization)![1].split(';');
      expect(signed).toEqual(['content-type', 'host', 'x-amz-date', 'x-amz-security-token', 'x-amz-target']);
      expect(headers.authorization).toBe(await sdkAuthorization('sqs', 'eu-west-1', seen[0], signed));
    } finally {
      server.close();
    }
  });

  test('batches of at most 10 entries with group and deduplication ids; an entry failed by SQS (not the sender) is retried, a sender fault is reported', async () => {
    let call = 0;
    const { server, base, seen } = await serve((s) => {
      call++;
      const entries = (JSON.parse(s.body) as { Entries: { Id: string }[] }).Entries;
      // First call: entry 1 fails on SQS's side (retried), entry 2 is the sender's fault (reported).
      const failed = call === 1 ? [{ Id: entries[1].Id, SenderFault: false, Code: 'InternalError' }, { Id: entries[2].Id, SenderFault: true, Code: 'InvalidParameterValue' }] : [];
      return { status: 200, body: JSON.stringify({ Successful: entries.filter((e) => !failed.some((f) => f.Id === e.Id)).map((e) => ({ Id: e.Id })), Failed: failed }) };
    });
    const queue = new SqsFifoQueue(`${base}/123456789012/fanout.fifo`, { region: 'eu-west-1', credentials: async () => CREDS });
    try {
      const messages = Array.from({ length: 12 }, (_, i) => ({ body: `{"n":${i}}`, groupId: `shard-${i % 4}`, deduplicationId: `e-${i}` }));
      const { failed } = await queue.send(messages);
      expect(failed).toEqual([2]);
      const bodies = seen.map((s) => JSON.parse(s.body) as { QueueUrl: string; Entries: { Id: string; MessageGroupId: string; MessageDeduplicationId: string }[] });
      expect(bodies.map((b) => b.Entries.map((e) => e.Id))).toEqual([['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'], ['1'], ['10', '11']]);
      expect(bodies[0].Entries[3]).toMatchObject({ MessageGroupId: 'shard-3', MessageDeduplicationId: 'e-3' });
      expect(seen[0].headers['x-amz-target']).toBe('AmazonSQS.SendMessageBatch');
      expect(bodies[0].QueueUrl).toBe(`${base}/123456789012/fanout.fifo`);
    } finally {
      queue.destroy();
      server.close();
    }
  });
});
