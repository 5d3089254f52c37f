/**
 * Typed channels: one event map per channel pattern, checked by the compiler. A schema's keys are exact
 * channel names (`scores:final`) or patterns ending in `*` (`chat:*`, `chat:room-*`); each value maps the
 * event types of those channels to their `data`. `subscribe` and `publish` then accept only channel names
 * the schema allows (a typo in a namespace is a compile error, via template literal types) and, per
 * channel, only its event types and data. Types only: nothing here runs but `createTypedClient`, which is
 * `createClient` with the typed view.
 */
import { createClient, type Client, type ClientOptions, type EventMap, type EventOf, type SubscribeOptions } from './index';
import type { ChannelOf, ChannelSchema, EventsOf } from './schema';

export type { ChannelName, ChannelOf, ChannelSchema, EventsOf } from './schema';

/** An event of channel `C` as `onEvent` receives it. */
export type ChannelEvent<S extends ChannelSchema, C extends string> = EventOf<EventsOf<S, C>>;

/** What `publish` answers. */
export interface Published {
  id: string;
  channel: string;
}

/** The methods a schema types; everything else is the {@link Client}'s. */
export interface TypedChannels<S extends ChannelSchema> {
  /** Receives the events of `channel`, a name the schema allows; `onEvent` gets that channel's event types. */
  subscribe<C extends ChannelOf<S>>(channel: C, h: SubscribeOptions<EventsOf<S, C>>): () => void;
  unsubscribe(channel: ChannelOf<S>): void;
  /** Publishes over the WebSocket: `type` and `data` are checked against the channel's event map. */
  publish<C extends ChannelOf<S>, K extends keyof EventsOf<S, C> & string>(channel: C, type: K, data: EventsOf<S, C>[K], opts?: { idempotencyKey?: string }): Promise<Published>;
}

/** A {@link Client} whose channels and events a schema types (the same object at run time). */
export type TypedClient<S extends ChannelSchema> = Omit<Client, keyof TypedChannels<S>> & TypedChannels<S>;

/**
 * Creates a client typed by a channel schema:
 *
 * ```ts
 * type Schema = { 'chat:*': { message: { text: string } }; 'scores:*': { goal: { team: 'home' | 'away' } } };
 * const client = createTypedClient<Schema>({ ticket });
 * client.subscribe('chat:lobby', { onEvent: (e) => e.data.text });   // 'chta:lobby' does not compile
 * ```
 */
export function createTypedClient<S extends ChannelSchema>(options: ClientOptions): TypedClient<S> {
  return createClient(options) as unknown as TypedClient<S>;
}

/** The typed view of a client created elsewhere. */
export function typed<S extends ChannelSchema>(client: Client<EventMap>): TypedClient<S> {
  return client as unknown as TypedClient<S>;
}
