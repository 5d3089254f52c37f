import { createRevokeHandler } from './handlers/revoke';
import { environmentRuntime } from './shared/runtime';

/** The Lambda entry: the handler over this container's runtime, configured from the environment at cold start. */
export const handler = createRevokeHandler(environmentRuntime());
