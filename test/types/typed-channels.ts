/**
 * Type test of typed channels (compiled by test/runtime/typed-channels.test.ts with strict settings, and by
 * `npm run typecheck`). Every `@ts-expect-error` line must be an error: if the types let it through, tsc
 * reports the directive as unused (TS2578) and the test fails.
 */
import { createTypedClient, typed, createClient, type ChannelEvent, type ClientOptions } from '../../client/src/index';

type Schema = {
  'chat:*': { message: { from: string; text: string }; typing: { from: string } };
  'scores:*': { goal: { team: 'home' | 'away'; minute: number } };
  'system:status': { status: { up: boolean } };
};
declare const options: ClientOptions;
const client = createTypedClient<Schema>(options);

// Channel names: namespaces of the schema, exact names as written.
client.subscribe('chat:lobby', { onEvent: (e) => void e.channel });
client.subscribe('scores:match-42', { onEvent: () => undefined });
client.subscribe('system:status', { onEvent: () => undefined });
// @ts-expect-error a typo in the namespace
client.subscribe('chta:lobby', { onEvent: () => undefined });
// @ts-expect-error a namespace the schema does not have
client.subscribe('game:1', { onEvent: () => undefined });
// @ts-expect-error an exact name is only itself
client.subscribe('system:other', { onEvent: () => undefined });
// @ts-expect-error a channel needs its namespace
client.subscribe('lobby', { onEvent: () => undefined });
declare const anyName: string;
// @ts-expect-error an unchecked string is not a channel name
client.subscribe(anyName, { onEvent: () => undefined });

// Events: onEvent gets the channel's event types, narrowed by `type`.
client.subscribe('chat:lobby', {
  onEvent: (e) => {
    if (e.type === 'message') {
      const text: string = e.data.text;
      void text;
      // @ts-expect-error a message has no minute
      void e.data.minute;
    }
    // @ts-expect-error goal is an event of scores:*, not chat:*
    if (e.type === 'goal') return;
  },
});
client.subscribe('scores:final', {
  onEvent: (e) => {
    const team: 'home' | 'away' = e.data.team;
    void team;
  },
});

// publish: the channel's event types and their data.
void client.publish('chat:lobby', 'message', { from: 'a', text: 'hi' });
void client.publish('scores:1', 'goal', { team: 'home', minute: 3 });
// @ts-expect-error wrong data for the type
void client.publish('chat:lobby', 'message', { from: 'a' });
// @ts-expect-error an event type of another namespace
void client.publish('chat:lobby', 'goal', { team: 'home', minute: 3 });
// @ts-expect-error a value outside the union
void client.publish('scores:1', 'goal', { team: 'visitors', minute: 3 });
// @ts-expect-error a typo in the channel
void client.publish('score:1', 'goal', { team: 'home', minute: 3 });

// unsubscribe takes names of the schema too.
client.unsubscribe('chat:lobby');
// @ts-expect-error a namespace alone is not a channel
client.unsubscribe('chat');

// The typed view of a client created elsewhere; the rest of the client is unchanged.
const view = typed<Schema>(createClient(options));
view.on('state', (s) => void s);
view.close();

// ChannelEvent names an event of a channel, e.g. for a handler defined apart.
const onScore = (e: ChannelEvent<Schema, 'scores:x'>): number => e.data.minute;
client.subscribe('scores:x', { onEvent: onScore });
// @ts-expect-error a handler of chat events cannot take scores
client.subscribe('scores:x', { onEvent: (e: ChannelEvent<Schema, 'chat:x'>) => e.data.text });
