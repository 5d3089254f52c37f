import { createFanoutDeadLetterHandler } from './handlers/fanout-dead-letters';
import { FanoutRuntime } from './shared/fanout-runtime';
import { environmentRuntime } from './shared/runtime';

/** The Lambda entry: the fan-out dead-letter consumer over this container's runtime, configured from the environment at cold start. */
export const handler = createFanoutDeadLetterHandler(environmentRuntime(FanoutRuntime));
