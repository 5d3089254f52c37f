import { WS_ACTIONS, type WsAction } from '../contract/ws';
import { RealtimeError, toRealtimeError } from './errors';

/**
 * The WebSocket wire protocol: JSON frames from the client selected by `action`, and the signal
 * frames the server sends besides event envelopes. Envelopes are sent exactly as core `publish()`
 * serialised them (`{"channel","id","type","data","ts"}`); signal types are reserved in core, so a
 * client tells them apart by `type` alone.
 */

/**
 * An action API Gateway routes on (`$request.body.action`); anything else reaches `$default`.
 * The one list, `WS_ACTIONS`, lives in `contract/ws.ts`, where the infrastructure reads it too.
 */
export type Action = WsAction;

export type ClientFrame =
  | { readonly action: 'subscribe'; readonly channel: unknown; readonly since?: unknown }
  | { readonly action: 'unsubscribe'; readonly channel: unknown }
  | { readonly action: 'publish'; readonly channel: unknown; readonly type: unknown; readonly data: unknown; readonly idempotencyKey?: unknown }
  | { readonly action: 'ping' }
  /** A channel's presence snapshot (issue 24), for a channel the connection is subscribed to. */
  | { readonly action: 'presence'; readonly channel: unknown };

/**
 * Parses one client frame. Field values are left for the core to validate (channel grammar,
 * cursor, type, payload size), so every transport answers the same error for the same input.
 * Throws `invalid_json` for a frame that is not a JSON object and `bad_request` for an unknown action.
 */
export function parseClientFrame(body: string | undefined): ClientFrame {
  if (body === undefined || body === '') throw new RealtimeError('invalid_json', 'Send frames as JSON objects with an "action": subscribe, unsubscribe, publish or ping.');
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    throw new RealtimeError('invalid_json', 'The frame is not valid JSON; send {"action": ...}.');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new RealtimeError('invalid_json', 'The frame must be a JSON object with an "action".');
  }
  const f = parsed as Record<string, unknown>;
  switch (f.action) {
    case 'subscribe':
      return { action: 'subscribe', channel: f.channel, since: f.since };
    case 'unsubscribe':
      return { action: 'unsubscribe', channel: f.channel };
    case 'publish':
      return { action: 'publish', channel: f.channel, type: f.type, data: f.data, idempotencyKey: f.idempotencyKey };
    case 'ping':
      return { action: 'ping' };
    case 'presence':
      return { action: 'presence', channel: f.channel };
    default: {
      const shown = typeof f.action === 'string' ? JSON.stringify(f.action.slice(0, 32)) : 'missing';
      throw new RealtimeError('bad_request', `Unknown action (${shown}); use one of: ${WS_ACTIONS.join(', ')}.`);
    }
  }
}

/** Server signal frames. */
export const frames = {
  subscribed: (channel: string, cursor: number | string): string => JSON.stringify({ type: 'subscribed', channel, cursor: String(cursor) }),
  unsubscribed: (channel: string): string => JSON.stringify({ type: 'unsubscribed', channel }),
  reset: (channel: string): string => JSON.stringify({ type: 'reset', channel, reason: 'history_unavailable' }),
  published: (id: string, channel: string): string => JSON.stringify({ type: 'published', id, channel }),
  pong: (): string => '{"type":"pong"}',
  /** A presence snapshot (`presenceJson` of core/presence.ts: `{channel, members, position}`) as a frame. */
  presence: (json: string): string => `{"type":"presence",${json.slice(1)}`,
  /** The `/live` endpoint's heartbeat, a data frame every HEARTBEAT_MS: a browser cannot see WebSocket pings, clients tell a quiet socket from a dead one by it. */
  heartbeat: (): string => '{"type":"heartbeat"}',
  /** An error frame; unknown errors are reported as `internal` without their message. */
  error: (err: unknown): string => {
    const e = toRealtimeError(err);
    return JSON.stringify({ type: 'error', error: e.toJSON().error });
  },
};
