/**
 * Compiled under strict TypeScript by test/runtime/client-types.test.ts (and by `npm run typecheck`):
 * the client README's Node setup, `import WebSocket from 'ws'` passed as the `WebSocket` option, as
 * an app team writes it (no cast).
 */
import WebSocket from 'ws';
import { createClient, ticketFrom, type ClientOptions } from '../../client/src/index';

export const node = createClient({ ticket: ticketFrom('http://127.0.0.1:3000/tickets'), WebSocket });

// The browser's WebSocket (lib.dom) fits as well.
export const browser: ClientOptions['WebSocket'] = globalThis.WebSocket;

// Still checked: something that is not a WebSocket constructor is refused.
// @ts-expect-error Date has no readyState, send or close
export const wrong = createClient({ ticket: ticketFrom('/tickets'), WebSocket: Date });
