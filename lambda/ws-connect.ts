import { createWsConnect } from './handlers/ws-connect';
import { environmentRuntime } from './shared/runtime';

/** The Lambda entry: the handler over this container's runtime, configured from the environment at cold start. */
export const handler = createWsConnect(environmentRuntime());
