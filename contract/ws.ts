/**
 * The WebSocket protocol's client actions, in one dependency-free module.
 *
 * API Gateway routes a frame on `$request.body.action`: the infrastructure (`lib/`) creates one
 * route per action, the local gateway emulator does the same, and the runtime (`core/ws-protocol.ts`)
 * parses exactly these. Anything else reaches `$default` and is answered with an `error` frame.
 */
export const WS_ACTIONS = ['subscribe', 'unsubscribe', 'publish', 'ping', 'presence'] as const;

export type WsAction = (typeof WS_ACTIONS)[number];
