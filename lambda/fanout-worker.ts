import { createFanoutWorker } from './handlers/fanout-worker';
import { FanoutRuntime } from './shared/fanout-runtime';
import { environmentRuntime } from './shared/runtime';

/** The Lambda entry: the fan-out worker over this container's runtime, configured from the environment at cold start. */
export const handler = createFanoutWorker(environmentRuntime(FanoutRuntime));
