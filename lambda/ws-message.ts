import { createWsMessage } from './handlers/ws-message';
import { FanoutRuntime } from './shared/fanout-runtime';
import { environmentRuntime } from './shared/runtime';

/** The Lambda entry: the handler over this container's runtime (with the management API), configured from the environment at cold start. */
export const handler = createWsMessage(environmentRuntime(FanoutRuntime));
