import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { ClientReports } from './client-metrics';

/** Counters of one SSE task, published as CloudWatch embedded-metric-format lines on stdout. */
export class ServiceMetrics {
  slowConsumerDrops = 0;
  replays = 0;
  resets = 0;
  redisReconnects = 0;
  rejectedConnections = 0;
  /** Streams closed because too many live events waited for their replay (MAX_HELD_EVENTS). */
  heldOverflows = 0;
  /** What clients posted to `POST /client-metrics` since the last flush, by namespace and transport. */
  readonly clients: ClientReports;
  private readonly metrics: Metrics;
  private timer?: NodeJS.Timeout;

  constructor(
    namespace: string,
    /** Open streams now, and live deliveries since the last call. */
    private readonly sample: () => { open: number; deliveries: number },
  ) {
    this.metrics = new Metrics({ namespace, serviceName: 'sse' });
    this.clients = new ClientReports(namespace);
  }

  /** Publishes every `intervalMs` (0 disables). */
  start(intervalMs: number): void {
    if (intervalMs <= 0) return;
    this.timer = setInterval(() => this.publish(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Emits one EMF document with the counters since the last one, and resets them. */
  publish(): void {
    const m = this.metrics;
    const { open, deliveries } = this.sample();
    m.addMetric('OpenConnections', MetricUnit.Count, open);
    m.addMetric('Deliveries', MetricUnit.Count, deliveries);
    m.addMetric('SlowConsumerDrops', MetricUnit.Count, this.slowConsumerDrops);
    m.addMetric('Replays', MetricUnit.Count, this.replays);
    m.addMetric('Resets', MetricUnit.Count, this.resets);
    m.addMetric('RedisReconnects', MetricUnit.Count, this.redisReconnects);
    m.addMetric('RejectedConnections', MetricUnit.Count, this.rejectedConnections);
    m.addMetric('HeldOverflows', MetricUnit.Count, this.heldOverflows);
    m.publishStoredMetrics();
    for (const doc of this.clients.drain()) process.stdout.write(JSON.stringify(doc) + '\n');
    this.slowConsumerDrops = this.replays = this.resets = this.redisReconnects = this.rejectedConnections = this.heldOverflows = 0;
  }
}
