import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import * as z from 'zod/mini';
import { CANARY_ENV, CANARY_SETTINGS } from '../../contract/settings';
import { ConfigError, readSettings } from '../../core/config';
import { runCanary, type CanaryEndpoints, type CanaryOptions, type CanaryReport } from '../../core/probe/canary';
import type { ProbeSigner } from '../../core/probe/clients';

/** The canary's settings, parsed once from the environment at cold start (rows of contract/settings.ts `CANARY_SETTINGS`). */
export interface CanaryConfig {
  readonly endpoints: CanaryEndpoints;
  readonly ticketUrl?: string;
  /** The `sub` its tickets name. Defaults to `realtime-canary`. */
  readonly sub: string;
  /** Namespace of its channels: one a ticket holder subscribes to. Defaults to `chat`. */
  readonly namespace: string;
  /** Events per run. Defaults to 10. */
  readonly burst: number;
  /** Longest wait for an answer, and for the burst after its last publish, in milliseconds. Defaults to 10000. */
  readonly timeoutMs: number;
  /** CloudWatch namespace of its metrics. Defaults to `RealtimeBlueprint`. */
  readonly metricsNamespace: string;
}

const url = z.string().check(z.regex(/^(https?|wss?):\/\/\S+$/, 'must be an http(s) or ws(s) URL'));
const Endpoints = z.object({ TicketUrl: url, SseUrl: url, PollUrl: url, PublishUrl: url, LiveUrl: z.optional(url), WebSocketUrl: z.optional(url) });

/** Reads the canary's settings (rows of `CANARY_SETTINGS`); throws ConfigError with one line naming the bad keys. */
export function canaryConfigFromEnv(env: NodeJS.ProcessEnv): CanaryConfig {
  const { endpoints: json, ...e } = readSettings(CANARY_SETTINGS, env);
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch {
    raw = undefined;
  }
  const endpoints = Endpoints.safeParse(raw);
  if (!endpoints.success) throw new ConfigError(`Invalid configuration: ${CANARY_ENV.endpoints}: must be JSON {"TicketUrl","SseUrl","PollUrl","PublishUrl","LiveUrl"?,"WebSocketUrl"?} of URLs`);
  return { endpoints: endpoints.data, ...e };
}

/**
 * One EMF document per transport (dimension `Transport`) and one over all of them (`Transport` = `all`: the sum of
 * lost, duplicated and out of order, the worst p99; what the alarms watch).
 */
export function canaryMetrics(report: CanaryReport, namespace: string): object[] {
  const m = new Metrics({ namespace, serviceName: 'canary' });
  const docs: object[] = [];
  const doc = (transport: string, v: { lost: number; gaps: number; duplicated: number; outOfOrder: number; failed: number; received: number; p50?: number; p99?: number; connectMs?: number }) => {
    m.addDimensions({ Transport: transport });
    m.addMetric('CanaryLost', MetricUnit.Count, v.lost);
    m.addMetric('CanaryGaps', MetricUnit.Count, v.gaps);
    m.addMetric('CanaryDuplicated', MetricUnit.Count, v.duplicated);
    m.addMetric('CanaryOutOfOrder', MetricUnit.Count, v.outOfOrder);
    m.addMetric('CanaryReceived', MetricUnit.Count, v.received);
    m.addMetric('CanaryFailed', MetricUnit.Count, v.failed);
    if (v.p50 !== undefined) m.addMetric('CanaryLatencyP50', MetricUnit.Milliseconds, Math.round(v.p50));
    if (v.p99 !== undefined) m.addMetric('CanaryLatencyP99', MetricUnit.Milliseconds, Math.round(v.p99));
    if (v.connectMs !== undefined) m.addMetric('CanaryConnectTime', MetricUnit.Milliseconds, Math.round(v.connectMs));
    docs.push(m.serializeMetrics());
    m.clearMetrics();
    m.clearDimensions();
  };
  for (const t of report.transports) doc(t.transport, { ...t, failed: t.error ? 1 : 0, p50: t.p50Ms, p99: t.p99Ms });
  const all = report.transports;
  const p99s = all.flatMap((t) => (t.p99Ms === undefined ? [] : [t.p99Ms]));
  doc('all', {
    // A burst that could not be published is lost for every reader.
    lost: all.reduce((a, t) => a + t.lost, 0) + report.publishErrors * all.length,
    gaps: all.reduce((a, t) => a + t.gaps, 0),
    duplicated: all.reduce((a, t) => a + t.duplicated, 0),
    outOfOrder: all.reduce((a, t) => a + t.outOfOrder, 0),
    received: all.reduce((a, t) => a + t.received, 0),
    failed: all.filter((t) => t.error).length,
    p99: p99s.length ? Math.max(...p99s) : undefined,
  });
  return docs;
}

export interface CanaryHandlerDeps {
  readonly config: CanaryConfig;
  readonly sign: ProbeSigner;
  /** Where EMF documents go. Defaults to stdout, one line each (what CloudWatch Logs extracts on Lambda). */
  readonly emit?: (line: string) => void;
}

/** The scheduled handler: one run, its metrics, and the report as the result (and a log line of it, without data). */
export function createCanaryHandler(deps: CanaryHandlerDeps): () => Promise<CanaryReport> {
  const emit = deps.emit ?? ((line: string) => void process.stdout.write(line + '\n'));
  return async () => {
    const c = deps.config;
    const options: CanaryOptions = { endpoints: c.endpoints, ticketUrl: c.ticketUrl, auth: { kind: 'iam', sub: c.sub }, sign: deps.sign, namespace: c.namespace, burst: c.burst, timeoutMs: c.timeoutMs };
    const report = await runCanary(options);
    for (const d of canaryMetrics(report, c.metricsNamespace)) emit(JSON.stringify(d));
    const summary = report.transports.map(({ latenciesMs: _l, ...t }) => t);
    emit(JSON.stringify({ level: 'INFO', message: 'canary run', channel: report.channel, published: report.published, publishErrors: report.publishErrors, transports: summary }));
    return report;
  };
}
