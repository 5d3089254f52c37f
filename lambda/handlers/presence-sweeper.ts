import { removeConnection } from '../../core/connections';
import { isGone } from '../../core/fanout';
import { gatewayEnd, presenceOn, sweepGatewayPresence, type GatewaySweepResult } from '../../core/presence-gateway';
import { wrapHandler } from '../shared/handler';
import type { FanoutRuntime } from '../shared/fanout-runtime';

/** The part of Lambda's context the sweeper reads. */
export interface SweeperContext {
  getRemainingTimeInMillis(): number;
}

export interface PresenceSweeperOptions {
  /** The clock of the sweep (epoch ms). Defaults to `Date.now` (tests pass a virtual one). */
  readonly now?: () => number;
}

/** Milliseconds of the invocation left unused: the sweep stops asking before the function's timeout. */
const STOP_BEFORE_TIMEOUT_MS = 10_000;

/**
 * The presence sweeper of API Gateway connections (EventBridge Scheduler, every minute; docs/DESIGN.md, "Presence"):
 * every connection whose presence lease ended (no frame for `GATEWAY_PRESENCE_LEASE_MS`, core/presence-gateway.ts) is asked about with
 * GetConnection (`GET @connections/{id}`, signed here like the posts: `core/aws/management.ts`). `410 Gone`: the
 * connection is ended as its lost `$disconnect` would have (registry entry removed, members into grace; the tasks'
 * settle, every second, makes them leave after it). Open: a new lease. Anything else (throttling, 5xx): asked again on
 * the next run. A failure of the run itself (Redis unreachable) is thrown: the invocation fails and is counted.
 */
export function createPresenceSweeper(runtime: FanoutRuntime, options: PresenceSweeperOptions = {}): (event: unknown, context?: SweeperContext) => Promise<GatewaySweepResult> {
  const none: GatewaySweepResult = { checked: 0, gone: 0, open: 0, failed: 0 };
  const handle = wrapHandler<{ readonly context?: SweeperContext }, GatewaySweepResult>(runtime, {
    name: 'presence sweeper',
    failureNote: 'the next run sweeps again',
    answer: (e) => {
      throw e;
    },
    run: async ({ context }) => {
      if (!presenceOn(runtime.core.namespaces)) return none;
      const management = runtime.postClient();
      if (!management) throw new Error('no management endpoint (WS_MANAGEMENT_ENDPOINT): cannot ask API Gateway about connections');
      const rt = await runtime.clients();
      const deps = { redis: rt.redis, config: rt.config, logger: runtime.logger, now: options.now };
      const stopAt = context ? Date.now() + context.getRemainingTimeInMillis() - STOP_BEFORE_TIMEOUT_MS : Infinity;
      const result = await sweepGatewayPresence({
        ...deps,
        more: () => Date.now() < stopAt,
        connectionState: async (connectionId) => {
          try {
            await management.getConnection(connectionId);
            return 'open';
          } catch (err) {
            if (isGone(err)) return 'gone';
            throw err;
          }
        },
        disconnect: async (connectionId) => {
          await removeConnection(connectionId, deps);
          await gatewayEnd(connectionId, deps);
        },
      });
      runtime.logger.info('presence sweep', { ...result });
      return result;
    },
  });
  return (_event, context) => handle({ context });
}
