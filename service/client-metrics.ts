import type { IncomingMessage } from 'node:http';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { z } from 'zod';
import { LATENCY_BUCKETS_MS } from '../contract/client-metrics';
import { NAMESPACE_PATTERN, type Namespaces } from '../core/config';
import { RealtimeError } from '../core/errors';
import type { RedisLike } from '../core/redis/client';
import { redeemTicket } from '../core/tickets';
import { retryAfterMs } from './admission';
import type { ServiceConfig } from './config';
import { clientIp, FixedWindowLimiter } from './limits';

/** Namespaces one report may name. */
export const MAX_REPORT_NAMESPACES = 32;
/** Largest count a report may carry per field (a minute of a busy client is far below it). */
const MAX_COUNT = 1_000_000;

const count = z.number().int().min(0).max(MAX_COUNT);
const NamespaceStats = z.strictObject({
  received: count,
  duplicates: count,
  // Events whose `prev` was not the last one the client received (SDKs before it was counted do not send it).
  gaps: count.optional(),
  resets: count,
  reconnects: count,
  switches: count,
  latency: z.array(count).length(LATENCY_BUCKETS_MS.length, `must have ${LATENCY_BUCKETS_MS.length} buckets (${LATENCY_BUCKETS_MS.join(', ')} ms)`),
});
/** What the client SDK's reporter posts (client/src/index.ts `report`): differences since its last report, summed per channel namespace. */
export const ClientReportSchema = z.strictObject({
  transport: z.enum(['ws', 'sse', 'poll']),
  namespaces: z
    .record(z.string().regex(NAMESPACE_PATTERN, 'namespace names are lowercase letters, digits and "-", 1-32 chars'), NamespaceStats)
    .refine((v) => Object.keys(v).length >= 1 && Object.keys(v).length <= MAX_REPORT_NAMESPACES, `name 1 to ${MAX_REPORT_NAMESPACES} namespaces`),
});
export type ClientReport = z.infer<typeof ClientReportSchema>;
type Counts = z.infer<typeof NamespaceStats>;

/** The quantile `q` of histogram `h` over {@link LATENCY_BUCKETS_MS}, as its bucket's upper bound. */
function quantile(h: readonly number[], q: number): number | undefined {
  const n = h.reduce((a, b) => a + b, 0);
  let c = 0;
  for (let i = 0; i < h.length; i++) if (n && (c += h[i]) >= q * n) return LATENCY_BUCKETS_MS[i];
  return undefined;
}

/**
 * What clients reported since the last EMF flush, summed per (namespace, transport). One EMF document per group,
 * dimensions `Namespace` (the channel namespace) and `Transport`; latency as p50/p99 of the group's histogram
 * (bucket upper bounds: EMF carries values, not counts per value).
 */
export class ClientReports {
  private groups = new Map<string, { reports: number } & Counts>();
  private readonly metrics: Metrics;

  constructor(namespace: string) {
    this.metrics = new Metrics({ namespace, serviceName: 'sse' });
  }

  add(report: ClientReport): void {
    for (const [ns, s] of Object.entries(report.namespaces)) {
      const key = `${ns} ${report.transport}`;
      let g = this.groups.get(key);
      if (!g) this.groups.set(key, (g = { reports: 0, received: 0, duplicates: 0, gaps: 0, resets: 0, reconnects: 0, switches: 0, latency: LATENCY_BUCKETS_MS.map(() => 0) }));
      g.reports++;
      g.received += s.received;
      g.duplicates += s.duplicates;
      g.gaps = (g.gaps ?? 0) + (s.gaps ?? 0);
      g.resets += s.resets;
      g.reconnects += s.reconnects;
      g.switches += s.switches;
      s.latency.forEach((n, i) => (g.latency[i] += n));
    }
  }

  /** The EMF documents of the groups reported since the last call (and forgets them). */
  drain(): object[] {
    const m = this.metrics;
    const docs: object[] = [];
    for (const [key, g] of this.groups) {
      const [ns, transport] = key.split(' ');
      m.addDimensions({ Namespace: ns, Transport: transport });
      m.addMetric('ClientReports', MetricUnit.Count, g.reports);
      m.addMetric('ClientReceived', MetricUnit.Count, g.received);
      m.addMetric('ClientDuplicates', MetricUnit.Count, g.duplicates);
      m.addMetric('ClientGaps', MetricUnit.Count, g.gaps ?? 0);
      m.addMetric('ClientResets', MetricUnit.Count, g.resets);
      m.addMetric('ClientReconnects', MetricUnit.Count, g.reconnects);
      m.addMetric('ClientTransportSwitches', MetricUnit.Count, g.switches);
      const p50 = quantile(g.latency, 0.5);
      const p99 = quantile(g.latency, 0.99);
      if (p50 !== undefined) m.addMetric('ClientLatencyP50', MetricUnit.Milliseconds, p50);
      if (p99 !== undefined) m.addMetric('ClientLatencyP99', MetricUnit.Milliseconds, p99);
      docs.push(m.serializeMetrics());
      m.clearMetrics();
      m.clearDimensions();
    }
    this.groups = new Map();
    return docs;
  }
}

export interface ClientMetricsDeps {
  readonly config: ServiceConfig;
  readonly redis: RedisLike;
  readonly reports: ClientReports;
  /** Milliseconds since the epoch. */
  readonly now: () => number;
}

/**
 * `POST /client-metrics`: one report of the client SDK's reporter. Each namespace it names decides who may report
 * (`clientMetrics` in NAMESPACES_JSON): `anonymous` anyone, `authenticated` (the default) a ticket holder whose
 * ticket grants a channel of that namespace (`?ticket=`, spent like a connection's), `off` nobody. At most
 * CLIENT_METRICS_MAX_BYTES of body and CLIENT_METRICS_PER_MINUTE reports per user (with a ticket) or client IP.
 */
export class ClientMetricsEndpoint {
  private readonly limiter: FixedWindowLimiter;

  constructor(private readonly deps: ClientMetricsDeps) {
    this.limiter = new FixedWindowLimiter(deps.config.clientMetricsPerMinute, 60_000, deps.now);
  }

  async handle(req: IncomingMessage, url: URL): Promise<void> {
    const { config } = this.deps;
    if (config.clientMetricsPerMinute === 0) throw new RealtimeError('not_found', 'Client metrics are off on this deployment (CLIENT_METRICS_PER_MINUTE=0).');
    const report = parseReport(await readBody(req, config.clientMetricsMaxBytes));
    const policies = config.core.namespaces;
    const names = Object.keys(report.namespaces);
    const unknown = names.filter((ns) => !Object.prototype.hasOwnProperty.call(policies, ns));
    if (unknown.length) throw new RealtimeError('bad_request', `Unknown namespace(s): ${unknown.join(', ')} (the namespaces are in the deployment's NAMESPACES_JSON).`);
    const off = names.filter((ns) => policyOf(policies, ns) === 'off');
    if (off.length) throw new RealtimeError('forbidden', `Namespace(s) ${off.join(', ')} take no client metrics (clientMetrics "off").`);
    const ticket = url.searchParams.get('ticket');
    let key = 'ip:' + clientIp(req, config.trustProxyHops);
    const needTicket = names.filter((ns) => policyOf(policies, ns) !== 'anonymous');
    if (needTicket.length || ticket) {
      if (!ticket) throw new RealtimeError('unauthorized', `Reports on ${needTicket.join(', ')} need a ticket: pass one from POST /tickets as ?ticket=.`);
      const grant = await redeemTicket(ticket, 'sse', { redis: this.deps.redis, config: config.core, now: this.deps.now });
      const granted = new Set(grant.channels.map((c) => c.slice(0, c.indexOf(':'))));
      const denied = needTicket.filter((ns) => !granted.has(ns));
      if (denied.length) throw new RealtimeError('channel_not_granted', `The ticket grants no channel of: ${denied.join(', ')}.`);
      key = 'user:' + grant.sub;
    }
    const wait = this.limiter.take(key);
    if (wait > 0) {
      const e = new RealtimeError('rate_limited', `At most ${config.clientMetricsPerMinute} reports per minute; retry after the Retry-After seconds.`);
      retryAfterMs.set(e, wait);
      throw e;
    }
    this.deps.reports.add(report);
  }
}

function policyOf(policies: Namespaces, ns: string): 'off' | 'authenticated' | 'anonymous' {
  return policies[ns].clientMetrics ?? 'authenticated';
}

function parseReport(body: string): ClientReport {
  let raw: unknown;
  try {
    raw = JSON.parse(body);
  } catch {
    throw new RealtimeError('invalid_json', 'The body must be JSON: {"transport","namespaces":{"<namespace>":{received,duplicates,gaps,resets,reconnects,switches,latency}}}.');
  }
  const r = ClientReportSchema.safeParse(raw);
  if (!r.success) throw new RealtimeError('bad_request', r.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; '));
  return r.data;
}

/** The request body as text, refused (`payload_too_large`) past `max` bytes without reading the rest. */
async function readBody(req: IncomingMessage, max: number): Promise<string> {
  const declared = Number(req.headers['content-length']);
  if (declared > max) throw new RealtimeError('payload_too_large', `A report is at most ${max} bytes.`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > max) throw new RealtimeError('payload_too_large', `A report is at most ${max} bytes.`);
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}
