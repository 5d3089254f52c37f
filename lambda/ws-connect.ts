import { createWsConnect } from './handlers/ws-connect';
import { FanoutRuntime } from './shared/fanout-runtime';
import { environmentRuntime } from './shared/runtime';

/** The Lambda entry: the handler over this container's runtime (with the fan-out queue), configured from the environment at cold start. */
export const handler = createWsConnect(environmentRuntime(FanoutRuntime));
