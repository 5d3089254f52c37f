/**
 * The types of a channel schema, with no dependency (the backend SDK declares them too, without the client):
 * channel patterns (`chat:*`) or exact names (`system:status`) → event type → data.
 */

/** Channel patterns (or exact names) → event type → data. */
export type ChannelSchema = { readonly [pattern: string]: Record<string, unknown> };

/** The channel names a pattern stands for: `chat:*` → `` `chat:${string}` ``; an exact name stands for itself. */
export type ChannelName<P extends string> = P extends `${infer Head}*` ? `${Head}${string}` : P;

/** Every channel name a schema allows. */
export type ChannelOf<S extends ChannelSchema> = { [P in keyof S & string]: ChannelName<P> }[keyof S & string];

/** The event map of channel `C`: the map of the pattern it matches (a channel matching several gets the union). */
export type EventsOf<S extends ChannelSchema, C extends string> = { [P in keyof S & string]: C extends ChannelName<P> ? S[P] : never }[keyof S & string];
