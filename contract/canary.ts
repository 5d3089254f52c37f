/**
 * The endpoints the canary probes: the stack outputs of the same names. The stack writes them into the canary's
 * `CANARY_ENDPOINTS` (lib/canary.ts); the canary reads them (core/probe/canary.ts).
 */
export interface CanaryEndpoints {
  readonly TicketUrl: string;
  readonly SseUrl: string;
  readonly PollUrl: string;
  readonly PublishUrl: string;
  /** The tasks' WebSocket endpoint (`webSocket.mode` tasks or both). */
  readonly LiveUrl?: string;
  /** The API Gateway WebSocket endpoint (`webSocket.mode` apigateway or both). */
  readonly WebSocketUrl?: string;
}
