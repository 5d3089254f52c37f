import { PostToConnectionCommand } from '@aws-sdk/client-apigatewaymanagementapi';
import { maySubscribe, parseChannel } from '../core/channels';
import { addSubscription, connectionGrant, getConnection, removeSubscription, type ConnectionRecord } from '../core/connections';
import { RealtimeError, toRealtimeError } from '../core/errors';
import { claimCursor, envelopeSeq, parseCursor, publish, replay } from '../core/events';
import { fanout, sendToConnection, type DeliveryDeps } from '../core/fanout';
import { frames, parseClientFrame, type ClientFrame } from '../core/ws-protocol';
import { getRuntime, logger } from './shared/runtime';
import { deliveryDeps, managementClient, type WsEvent, type WsResult } from './shared/ws';

/**
 * Every frame a client sends: the `subscribe`, `unsubscribe`, `publish` and `ping` routes and
 * `$default` (malformed JSON, unknown actions). Replies go back through the management API (the
 * routes have no route responses); every failure reaches the client as an `error` frame and the
 * connection stays usable. It never throws.
 */
export async function handler(event: WsEvent): Promise<WsResult> {
  const connectionId = event.requestContext.connectionId;
  const client = managementClient();
  if (!client) {
    logger.error('WS_MANAGEMENT_ENDPOINT is not set: cannot answer WebSocket frames', { connectionId });
    return { statusCode: 500 };
  }
  let deps: DeliveryDeps;
  try {
    deps = deliveryDeps(await getRuntime(), client);
  } catch (err) {
    logger.error('runtime unavailable', { error: err as Error });
    await client.send(postFrame(connectionId, frames.error(err))).catch(() => undefined);
    return { statusCode: 200 };
  }
  const send = (frame: string) => sendToConnection(connectionId, frame, deps);
  try {
    const body = event.body !== undefined && event.isBase64Encoded ? Buffer.from(event.body, 'base64').toString('utf8') : event.body;
    await route(parseClientFrame(body), connectionId, deps, send);
  } catch (err) {
    const e = toRealtimeError(err);
    if (e.status >= 500) logger.error('frame failed', { error: err as Error, connectionId, routeKey: event.requestContext.routeKey });
    await send(frames.error(e));
  }
  return { statusCode: 200 };
}

/** A raw post for when the runtime (Redis) is unavailable and the registry cannot be used. */
function postFrame(connectionId: string, frame: string): PostToConnectionCommand {
  return new PostToConnectionCommand({ ConnectionId: connectionId, Data: Buffer.from(frame) });
}

async function connection(connectionId: string, deps: DeliveryDeps): Promise<ConnectionRecord> {
  const conn = await getConnection(connectionId, deps);
  if (!conn) throw new RealtimeError('unauthorized', 'This connection is no longer registered; reconnect with a new ticket.');
  return conn;
}

async function route(frame: ClientFrame, connectionId: string, deps: DeliveryDeps, send: (frame: string) => Promise<unknown>): Promise<void> {
  switch (frame.action) {
    case 'ping':
      await send(frames.pong());
      return;

    case 'subscribe': {
      const ch = parseChannel(frame.channel, deps.config.namespaces);
      const since = frame.since === undefined || frame.since === null ? undefined : parseCursor(frame.since);
      const conn = await connection(connectionId, deps);
      const granted = ch.policy.subscribe === 'public' || (conn.grant.includes(ch.channel) && maySubscribe(conn.identity, ch, connectionGrant(conn)));
      if (!granted) throw new RealtimeError('channel_not_granted', `The ticket does not grant "${ch.channel}"; get a ticket that names it.`);
      // The subscription exists before the replay runs: events after its floor come from the
      // fan-out, events up to it from the replay, so nothing is lost or sent twice. An existing
      // subscription (the ticket's channels, subscribed at $connect) keeps its floor.
      const { floor, added } = await addSubscription(connectionId, ch.channel, deps);
      if (since !== undefined && since > floor) {
        // A cursor above the floor of a new subscription is ahead of the sequence: a failover lost
        // writes and ids the client has seen may be issued again. claimCursor moves the sequence past
        // it (and detects the same on an older subscription, whose floor can legitimately be lower).
        if (((await claimCursor(since, deps)) || added) && (await send(frames.reset(ch.channel))) === 'gone') return;
      } else if (since !== undefined && since < floor) {
        const r = await replay([ch], since, deps);
        if (r.resets.includes(ch.channel)) {
          if ((await send(frames.reset(ch.channel))) === 'gone') return;
        }
        for (const envelope of r.events) {
          const seq = envelopeSeq(envelope);
          if (seq <= since || seq > floor) continue;
          if ((await send(envelope)) === 'gone') return;
        }
      }
      await send(frames.subscribed(ch.channel, floor));
      return;
    }

    case 'unsubscribe': {
      const ch = parseChannel(frame.channel, deps.config.namespaces);
      await removeSubscription(connectionId, ch.channel, deps);
      await send(frames.unsubscribed(ch.channel));
      return;
    }

    case 'publish': {
      const conn = await connection(connectionId, deps);
      // The same core publish as POST /publish: the namespace policy decides whether a user may publish
      // (to a `granted` channel: only with the channel in a backend's grant).
      const result = await publish(
        { channel: frame.channel, type: frame.type, data: frame.data, idempotencyKey: frame.idempotencyKey },
        conn.identity,
        deps,
        connectionGrant(conn),
      );
      await send(frames.published(result.id, result.channel));
      if (!result.duplicate && result.envelope) {
        try {
          const f = await fanout(result.channel, result.envelope, deps);
          logger.info('published', { channel: result.channel, id: result.id, by: connectionId, ...f });
        } catch (err) {
          logger.error('fan-out failed', { error: err as Error, channel: result.channel, id: result.id });
        }
      }
      return;
    }
  }
}
