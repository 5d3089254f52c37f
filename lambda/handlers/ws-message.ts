import { handleFrame } from '../../core/ws-session';
import { wsMessageHandler } from '../shared/handler';
import type { FanoutRuntime } from '../shared/fanout-runtime';
import type { WsEvent, WsResult } from '../shared/ws';

/**
 * Every frame a client sends: the `subscribe`, `unsubscribe`, `publish` and `ping` routes and
 * `$default` (malformed JSON, unknown actions). Replies go back through the management API (the
 * routes have no route responses); every failure reaches the client as an `error` frame and the
 * connection stays usable. It never throws.
 */
export function createWsMessage(runtime: FanoutRuntime): (event: WsEvent) => Promise<WsResult> {
  return wsMessageHandler(runtime, 'frame', async (event) => {
    if (!runtime.postClient()) {
      runtime.logger.error('no management endpoint (WS_MANAGEMENT_ENDPOINT): cannot answer WebSocket frames', { connectionId: event.requestContext.connectionId });
      return { statusCode: 500 };
    }
    const body = event.body !== undefined && event.isBase64Encoded ? Buffer.from(event.body, 'base64').toString('utf8') : event.body;
    await handleFrame(event.requestContext.connectionId, body, runtime.sessionDeps(await runtime.clients()));
    return { statusCode: 200 };
  });
}
