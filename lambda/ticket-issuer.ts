import { createTicketIssuer } from './handlers/ticket-issuer';
import { environmentRuntime } from './shared/runtime';

/** The Lambda entry: the handler over this container's runtime, configured from the environment at cold start. */
export const handler = createTicketIssuer(environmentRuntime());
