/**
 * The canary's code (the Lambda handler, its signer and core/probe/canary.ts) against the local stack: tickets minted
 * as a trusted backend and publishes signed with SigV4 (the stack verifies them, as API Gateway's IAM authorisation
 * does), every transport through the public endpoints. Healthy, it reports nothing lost; behind a proxy that drops,
 * doubles, reorders or delays given events per transport, it reports exactly those, per transport. Counts only: the
 * one timing check is that an injected delay of D ms shows as at least D.
 */
import pino from 'pino';
import { CANARY_ENV } from '../../contract/settings';
import { environmentCredentials } from '../../core/aws/signer';
import type { CanaryReport, TransportReport } from '../../core/probe/canary';
import { executeApiSigner } from '../../core/probe/signer';
import { canaryConfigFromEnv, createCanaryHandler } from '../../lambda/handlers/canary';
import type { LocalStack } from '../../local/stack';
import { proxyStack, type EventProxy, type StackProxies } from '../support/event-proxy';

process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';

const REGION = 'eu-west-1';
const KEYS = { AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' };
const BURST = 8;

let stack: LocalStack;
let tasks: EventProxy;
let gateway: EventProxy;
let proxies: StackProxies;

beforeAll(async () => {
  const { startLocalStack } = await import('../../local/stack');
  stack = await startLocalStack({
    logger: pino({ level: 'silent' }),
    verifySignatures: { credentials: { accessKeyId: KEYS.AWS_ACCESS_KEY_ID, secretAccessKey: KEYS.AWS_SECRET_ACCESS_KEY }, region: REGION },
    env: { LOG_LEVEL: 'silent', METRICS_INTERVAL_MS: '0' },
  });
  proxies = await proxyStack(stack.outputs);
  ({ tasks, gateway } = proxies);
});
afterEach(() => {
  proxies.clear();
});
afterAll(async () => {
  await proxies?.close();
  await stack?.close();
});

/** The Lambda's handler as `lambda/canary.ts` builds it, from the environment the stack would set, pointed at the proxies. */
function handler(emitted: string[], env: Record<string, string> = {}) {
  const o = stack.outputs;
  const endpoints = { TicketUrl: o.TicketUrl, SseUrl: tasks.via(o.SseUrl), PollUrl: tasks.via(o.PollUrl), PublishUrl: o.PublishUrl, LiveUrl: tasks.via(o.LiveUrl), WebSocketUrl: gateway.via(o.WebSocketUrl) };
  const config = canaryConfigFromEnv({
    [CANARY_ENV.endpoints]: JSON.stringify(endpoints),
    [CANARY_ENV.ticketUrl]: o.TicketUrl.replace(/\/tickets$/, '/backend/tickets'),
    [CANARY_ENV.burst]: String(BURST),
    [CANARY_ENV.timeoutMs]: '4000',
    ...env,
  });
  return createCanaryHandler({ config, sign: executeApiSigner(environmentCredentials(KEYS), REGION), emit: (l) => emitted.push(l) });
}

const counts = (t: TransportReport) => ({ transport: t.transport, received: t.received, lost: t.lost, gaps: t.gaps, duplicated: t.duplicated, outOfOrder: t.outOfOrder, error: t.error });
const byTransport = (r: CanaryReport) => Object.fromEntries(r.transports.map((t) => [t.transport, counts(t)]));
const clean = (transport: string) => ({ transport, received: BURST, lost: 0, gaps: 0, duplicated: 0, outOfOrder: 0, error: undefined });

it('a healthy stack: every transport receives the whole burst, nothing lost, doubled or out of order; EMF per transport and over all', async () => {
  const emitted: string[] = [];
  const report = await handler(emitted)();
  expect(report.published).toBe(BURST);
  expect(report.publishErrors).toBe(0);
  expect(byTransport(report)).toEqual({ sse: clean('sse'), live: clean('live'), apigateway: clean('apigateway'), poll: clean('poll') });
  for (const t of report.transports) {
    expect(t.latenciesMs).toHaveLength(BURST);
    expect(t.connectMs).toBeGreaterThanOrEqual(0);
    expect(t.p99Ms).toBeGreaterThanOrEqual(t.p50Ms!);
  }
  const docs = emitted.filter((l) => l.includes('"_aws"')).map((l) => JSON.parse(l));
  expect(docs.map((d) => d.Transport)).toEqual(['sse', 'live', 'apigateway', 'poll', 'all']);
  expect(docs.at(-1)).toMatchObject({ Transport: 'all', CanaryLost: 0, CanaryGaps: 0, CanaryDuplicated: 0, CanaryOutOfOrder: 0, CanaryFailed: 0, CanaryReceived: 4 * BURST });
  expect(docs[0]._aws.CloudWatchMetrics[0]).toMatchObject({ Namespace: 'RealtimeBlueprint', Dimensions: [['service', 'Transport']] });
  expect(docs[0].service).toBe('canary');
  expect(docs[0]._aws.CloudWatchMetrics[0].Metrics.map((m: { Name: string }) => m.Name)).toEqual(
    expect.arrayContaining(['CanaryLost', 'CanaryGaps', 'CanaryDuplicated', 'CanaryOutOfOrder', 'CanaryReceived', 'CanaryFailed', 'CanaryLatencyP50', 'CanaryLatencyP99', 'CanaryConnectTime']),
  );
  // The log line carries counts, not the events' data, the tickets or the signer's credentials.
  const log = emitted.find((l) => l.includes('canary run'))!;
  expect(log).not.toContain(KEYS.AWS_SECRET_ACCESS_KEY);
  expect(log).not.toContain('ticket=');
}, 60_000);

it('a faulty path: exactly the injected losses, duplicates and reorderings, per transport; gaps as a client detects them by prev', async () => {
  tasks.faults.set('sse', { drop: [1, 4] });
  tasks.faults.set('live', { duplicate: [2], late: [5] });
  gateway.faults.set('apigateway', { drop: [0], duplicate: [7] });
  tasks.faults.set('poll', { drop: [3, 6, 7] });
  const emitted: string[] = [];
  const report = await handler(emitted)();
  // Gaps by prev: one per run of missing events, the first event's too (the next names it, not the channel's start);
  // none for those missing at the end of the burst (poll's 6 and 7: no later event names them), which only the burst's
  // numbers show; an event overtaken by the next (live's 5) is a gap to a client, which then drops it as late.
  expect(byTransport(report)).toEqual({
    sse: { ...clean('sse'), received: BURST - 2, lost: 2, gaps: 2 },
    live: { ...clean('live'), duplicated: 1, outOfOrder: 1, gaps: 1 },
    apigateway: { ...clean('apigateway'), received: BURST - 1, lost: 1, gaps: 1, duplicated: 1 },
    poll: { ...clean('poll'), received: BURST - 3, lost: 3, gaps: 1 },
  });
  const all = emitted.map((l) => JSON.parse(l)).find((d) => d.Transport === 'all');
  expect(all).toMatchObject({ CanaryLost: 6, CanaryGaps: 5, CanaryDuplicated: 2, CanaryOutOfOrder: 1 });
}, 60_000);

it('an injected delay of D ms shows as at least D on that transport only, nothing lost', async () => {
  const D = 400;
  tasks.faults.set('live', { delayMs: D });
  tasks.faults.set('poll', { delayMs: D });
  const report = await handler([])();
  const t = Object.fromEntries(report.transports.map((x) => [x.transport, x]));
  expect(t.live.p50Ms).toBeGreaterThanOrEqual(D);
  expect(t.poll.p50Ms).toBeGreaterThanOrEqual(D);
  expect(byTransport(report)).toEqual({ sse: clean('sse'), live: clean('live'), apigateway: clean('apigateway'), poll: clean('poll') });
}, 60_000);

it('a transport that cannot connect is reported failed with the whole burst lost; the others are still measured', async () => {
  const emitted: string[] = [];
  const o = stack.outputs;
  const report = await handler(emitted, {
    [CANARY_ENV.endpoints]: JSON.stringify({ TicketUrl: o.TicketUrl, SseUrl: o.SseUrl, PollUrl: o.PollUrl, PublishUrl: o.PublishUrl, LiveUrl: 'ws://127.0.0.1:9/live' }),
  })();
  expect(byTransport(report)).toEqual({ sse: clean('sse'), live: { transport: 'live', received: 0, lost: BURST, gaps: 0, duplicated: 0, outOfOrder: 0, error: expect.any(String) }, poll: clean('poll') });
  expect(emitted.map((l) => JSON.parse(l)).find((d) => d.Transport === 'all')).toMatchObject({ CanaryLost: BURST, CanaryFailed: 1 });
}, 60_000);

it('unsigned or wrongly signed: the stack refuses the tickets (403), every transport failed, nothing passes silently', async () => {
  const o = stack.outputs;
  const config = canaryConfigFromEnv({ [CANARY_ENV.endpoints]: JSON.stringify({ TicketUrl: o.TicketUrl, SseUrl: o.SseUrl, PollUrl: o.PollUrl, PublishUrl: o.PublishUrl }), [CANARY_ENV.ticketUrl]: o.TicketUrl.replace(/\/tickets$/, '/backend/tickets'), [CANARY_ENV.timeoutMs]: '1000' });
  const wrong = createCanaryHandler({ config, sign: executeApiSigner(environmentCredentials({ ...KEYS, AWS_SECRET_ACCESS_KEY: 'not-the-secret' }), REGION), emit: () => undefined });
  const report = await wrong();
  expect(report.transports.map((t) => [t.transport, t.error?.match(/HTTP 403/) !== null])).toEqual([
    ['sse', true],
    ['poll', true],
  ]);
  expect(report.publishErrors).toBe(10);
}, 60_000);

it('configuration: endpoints must be JSON of URLs; the burst and timeout are bounded', () => {
  expect(() => canaryConfigFromEnv({ [CANARY_ENV.endpoints]: 'nope' })).toThrow(/CANARY_ENDPOINTS: must be JSON/);
  const ok = JSON.stringify({ TicketUrl: 'https://t/tickets', SseUrl: 'https://s/events', PollUrl: 'https://s/poll', PublishUrl: 'https://p/publish' });
  expect(() => canaryConfigFromEnv({ [CANARY_ENV.endpoints]: ok, [CANARY_ENV.burst]: '0' })).toThrow(/CANARY_BURST/);
  expect(canaryConfigFromEnv({ [CANARY_ENV.endpoints]: ok })).toMatchObject({ sub: 'realtime-canary', namespace: 'chat', burst: 10, timeoutMs: 10_000, metricsNamespace: 'RealtimeBlueprint' });
});
