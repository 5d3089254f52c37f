import { createHistoryHandler } from './handlers/history';
import { environmentRuntime } from './shared/runtime';

/** The Lambda entry: the handler over this container's runtime, configured from the environment at cold start. */
export const handler = createHistoryHandler(environmentRuntime());
