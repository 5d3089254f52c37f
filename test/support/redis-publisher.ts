import type { PositionBroker } from '../../core/broker';
import type { ParsedChannel } from '../../core/channels';
import type { CoreConfig } from '../../core/config';
import { preparePublish } from '../../core/events';

const SERVER = { kind: 'server', principal: 'test-backend' } as const;

/** A running publisher of {@link runPublisher}. */
export interface TestPublisher {
  /** Per channel, the ids of the acknowledged events, in order. */
  readonly acked: number[][];
  /** Failed attempts so far, with the last error (for messages). */
  readonly failures: string;
  readonly lastError: string;
  /** Stops after the publish in flight. */
  stop(): Promise<void>;
}

/**
 * A publisher for fault tests on a Redis Cluster: round robin over `channels` through the per-channel broker, each
 * channel until it has `limit[i]` acknowledged events (the test raises the limits to step it, so it waits for
 * conditions rather than time). A failed attempt (a shard without a primary, a slot that is moving) is counted and
 * tried again.
 */
export function runPublisher(broker: PositionBroker, channels: readonly ParsedChannel[], limit: readonly number[], config: CoreConfig): TestPublisher {
  const acked: number[][] = channels.map(() => []);
  let running = true;
  let failures = 0;
  let lastError = '';
  const done = (async () => {
    for (let k = 0; running; k++) {
      const i = k % channels.length;
      if (acked[i].length >= limit[i]) {
        await new Promise((r) => setImmediate(r));
        continue;
      }
      try {
        const { head, tail } = preparePublish({ channel: channels[i].channel, type: 't', data: k }, SERVER, config);
        const r = await broker.publish({ channel: channels[i], head, tail });
        if (r.kind === 'published') acked[i].push(Number(r.id));
      } catch (err) {
        failures++;
        lastError = String(err);
        await new Promise((r) => setImmediate(r));
      }
    }
  })();
  return {
    acked,
    get failures() {
      return `${failures} (last: ${lastError})`;
    },
    get lastError() {
      return lastError;
    },
    stop: async () => {
      running = false;
      await done;
    },
  };
}
