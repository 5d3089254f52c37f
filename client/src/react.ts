/**
 * React bindings (`@realtime-blueprint/client/react`; React >= 18 is an optional peer dependency):
 * `<RealtimeProvider client>` puts one client in context, `useChannel(channel, handler)` receives a channel's
 * events while the component is mounted, `useConnectionState()` re-renders on state changes. Typed by a
 * channel schema with `createRealtimeHooks<Schema>()`. `usePresence(channel)` follows a channel's presence.
 *
 * Components that listen to the same channel share one subscription of the client (it carries one handler set
 * per channel); the channel is unsubscribed when the last of them unmounts (after the current task, so a
 * StrictMode remount or a move in the tree does not reconnect).
 */
import { createContext, createElement, useCallback, useContext, useEffect, useLayoutEffect, useRef, useState, useSyncExternalStore, type ReactElement, type ReactNode } from 'react';
import type { ChannelEvent, ChannelOf, ChannelSchema, TypedChannels, TypedClient } from './channels';
import type { Client, EventMap, EventOf, Presence, PresenceMember, State } from './index';

/** What `useChannel` takes besides the handler. */
export interface ChannelOptions {
  /** History could not cover the gap: reload this channel's state. */
  onReset?(channel: string): void;
  /** Deliver events after this id (used by the first component that subscribes the channel). */
  since?: string;
}

interface Listener {
  onEvent(e: unknown): void;
  onReset(channel: string): void;
}

const Context = createContext<Client | null>(null);

/** Puts `client` (a `Client` or a `TypedClient`) in context for the hooks below. The app creates (and closes) the client. */
export function RealtimeProvider(props: { client: Client<EventMap> | Omit<TypedClient<ChannelSchema>, keyof TypedChannels<ChannelSchema>>; children?: ReactNode }): ReactElement {
  return createElement(Context.Provider, { value: props.client as Client }, props.children);
}

/** The client of the nearest `RealtimeProvider`. */
export function useRealtimeClient(): Client {
  const client = useContext(Context);
  if (!client) throw new Error('useChannel/useConnectionState need a <RealtimeProvider client={client}> above the component.');
  return client;
}

/** Per client, per channel: the mounted listeners sharing its subscription. */
const shared = new WeakMap<Client, Map<string, Set<Listener>>>();

function listen(client: Client, channel: string, l: Listener, since?: string): () => void {
  let channels = shared.get(client);
  if (!channels) shared.set(client, (channels = new Map()));
  let set = channels.get(channel);
  if (!set) {
    const members = (set = new Set());
    channels.set(channel, members);
    client.subscribe(channel, {
      onEvent: (e) => members.forEach((m) => m.onEvent(e)),
      onReset: (c) => members.forEach((m) => m.onReset(c)),
      since,
    });
  }
  set.add(l);
  const members = set;
  const all = channels;
  return () => {
    members.delete(l);
    if (members.size) return;
    setTimeout(() => {
      if (members.size || all.get(channel) !== members) return;
      all.delete(channel);
      client.unsubscribe(channel);
    }, 0);
  };
}

/**
 * Calls `handler` with each event of `channel` while the component is mounted (`null`/`undefined`: none). The
 * latest `handler` and `onReset` are called: passing a new function on each render does not resubscribe.
 */
export function useChannel<M extends EventMap = EventMap>(channel: string | null | undefined, handler: (event: EventOf<M>) => void, options?: ChannelOptions): void {
  const client = useRealtimeClient();
  const latest = useRef({ handler, options });
  useLayoutEffect(() => {
    latest.current = { handler, options };
  });
  useEffect(() => {
    if (!channel) return undefined;
    return listen(client, channel, { onEvent: (e) => latest.current.handler(e as EventOf<M>), onReset: (c) => latest.current.options?.onReset?.(c) }, latest.current.options?.since);
  }, [client, channel]);
}

/** The client's connection state (`connecting | open | reconnecting | closed`); the component re-renders when it changes. */
export function useConnectionState(): State {
  const client = useRealtimeClient();
  return useSyncExternalStore(
    (changed) => client.on('state', changed),
    () => client.state,
    () => client.state,
  );
}

/** What `usePresence` returns: the channel's members (members mode), how many, and whether a snapshot was applied yet. */
export interface PresenceState {
  members: PresenceMember[];
  count: number;
  synced: boolean;
}

/** Per client, per channel: how many mounted components follow its presence. */
const following = new WeakMap<Client, Map<string, number>>();
const NONE: PresenceMember[] = [];

/**
 * The presence of `channel` (`client.presence(channel)`) while the component is mounted (`null`/`undefined`: none); it
 * re-renders on every change. Components share the client's one presence per channel; it is closed after the last of
 * them unmounts (after the current task, like `useChannel`).
 */
export function usePresence(channel: string | null | undefined): PresenceState {
  const client = useRealtimeClient();
  const [p, setP] = useState<Presence>();
  useEffect(() => {
    if (!channel) return undefined;
    let n = following.get(client);
    if (!n) following.set(client, (n = new Map()));
    const counts = n;
    counts.set(channel, (counts.get(channel) ?? 0) + 1);
    // The channel stays subscribed while this component is mounted, whatever `useChannel`s come and go.
    const stop = listen(client, channel, { onEvent: () => undefined, onReset: () => undefined });
    const q = client.presence(channel);
    setP(q);
    return () => {
      stop();
      counts.set(channel, counts.get(channel)! - 1);
      setP(undefined);
      setTimeout(() => counts.get(channel) || (counts.delete(channel), q.close()), 0);
    };
  }, [client, channel]);
  // One subscription per presence object, not one per render.
  const subscribe = useCallback((changed: () => void) => p?.onChange(changed) ?? (() => undefined), [p]);
  const members = useSyncExternalStore(
    subscribe,
    () => p?.members() ?? NONE,
    () => NONE,
  );
  return { members, count: p?.count() ?? 0, synced: !!p?.synced };
}

/** Hooks typed by a channel schema: `useChannel` takes only the schema's channel names and types each channel's events. */
export interface RealtimeHooks<S extends ChannelSchema> {
  useChannel<C extends ChannelOf<S>>(channel: C | null | undefined, handler: (event: ChannelEvent<S, C>) => void, options?: ChannelOptions): void;
  useConnectionState(): State;
  usePresence(channel: ChannelOf<S> | null | undefined): PresenceState;
  /** The client, typed (e.g. to `publish`). */
  useClient(): TypedClient<S>;
}

/** The hooks typed by `S`: `const { useChannel } = createRealtimeHooks<Schema>();` at module scope. */
export function createRealtimeHooks<S extends ChannelSchema>(): RealtimeHooks<S> {
  return {
    useChannel: useChannel as RealtimeHooks<S>['useChannel'],
    useConnectionState,
    usePresence,
    useClient: useRealtimeClient as unknown as () => TypedClient<S>,
  };
}
