import { once } from 'node:events';
import type { Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { policy } from '../../lambda/shared/handler';
import { startWsGateway, type WsGateway } from '../../local/ws-gateway';

/**
 * The API Gateway emulator's order of events when a client leaves while `$connect` runs: `$connect` answered 200, so
 * the connection existed and API Gateway reports its `$disconnect` (the handlers undo what `$connect` did: the
 * registry entry, the presence join). A client that half-closed its socket (FIN: an SDK giving up on a slow open)
 * was not `destroyed` yet, so the emulator handed the socket to `ws`, which drops an unreadable socket without a
 * word: no connection, no `$disconnect`, and the presence member `$connect` joined stayed for its whole lease
 * (found by presence-random.test.ts on a loaded machine). `$connect` is held until the emulator's side of the socket
 * has read the client's FIN, so the order is certain.
 */

let gw: WsGateway | undefined;
afterEach(async () => {
  await gw?.close();
  gw = undefined;
});

function upgradeRequest(url: string): string {
  const u = new URL(url);
  return `GET ${u.pathname}?ticket=t HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`;
}

test.each([
  ['half-closes its socket (FIN)', (s: Socket) => s.end()],
  ['destroys its socket', (s: Socket) => s.destroy()],
])('a client that %s while $connect runs gets its $disconnect once $connect has answered 200', async (_what, leave) => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let arrived!: (id: string) => void;
  const connecting = new Promise<string>((r) => (arrived = r));
  const events: string[] = [];
  let disconnected!: () => void;
  const gone = new Promise<void>((r) => (disconnected = r));
  gw = await startWsGateway({
    handlers: {
      authorizer: async (e) => policy('u', 'Allow', e.methodArn, { sub: 'u' }),
      connect: async (e) => {
        arrived(e.requestContext.connectionId);
        await gate;
        events.push(`connect ${e.requestContext.connectionId}`);
        return { statusCode: 200 };
      },
      disconnect: async (e) => {
        events.push(`disconnect ${e.requestContext.connectionId}`);
        disconnected();
        return { statusCode: 200 };
      },
      default: async () => ({ statusCode: 200 }),
    },
  });
  // The emulator's side of the socket, to know when it has read the client's leaving.
  const server = (gw as unknown as { server: Server }).server;
  const theirs = new Promise<Duplex>((r) => server.prependOnceListener('upgrade', (_req, socket: Duplex) => r(socket)));
  const u = new URL(gw.url);
  const client = connect(Number(u.port), u.hostname);
  client.on('error', () => undefined);
  await once(client, 'connect');
  client.write(upgradeRequest(gw.url));
  const id = await connecting;
  const socket = await theirs;
  const seen = new Promise<void>((r) => {
    if (socket.readableEnded || socket.destroyed) return r();
    socket.once('end', () => r());
    socket.once('close', () => r());
  });
  leave(client);
  await seen;
  release();
  // $connect answered 200 for a client that had left: the connection is reported gone (before the fix, never: the
  // test's own timeout), and nothing is kept of it.
  await gone;
  expect(events).toEqual([`connect ${id}`, `disconnect ${id}`]);
  expect(gw.connectionIds()).toEqual([]);
});
