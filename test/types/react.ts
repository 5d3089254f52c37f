/**
 * Type test of the React bindings (see typed-channels.ts): typed hooks take only the schema's channel names and
 * give each channel's events; the untyped hooks take an event map.
 */
import { createRealtimeHooks, useChannel, useConnectionState, usePresence } from '../../client/src/react';

type Schema = { 'chat:*': { message: { text: string } }; 'scores:*': { goal: { team: 'home' | 'away' } } };
const hooks = createRealtimeHooks<Schema>();

export function Typed(): string {
  hooks.useChannel('chat:lobby', (e) => void e.data.text);
  hooks.useChannel('scores:1', (e) => {
    const team: 'home' | 'away' = e.data.team;
    void team;
    // @ts-expect-error scores carry goals, not text
    void e.data.text;
  });
  // @ts-expect-error a typo in the namespace
  hooks.useChannel('chta:lobby', () => undefined);
  hooks.useChannel(null, () => undefined);
  void hooks.useClient().publish('chat:lobby', 'message', { text: 'hi' });
  // @ts-expect-error the wrong data for the type
  void hooks.useClient().publish('chat:lobby', 'message', { txt: 'hi' });
  const state: 'connecting' | 'open' | 'reconnecting' | 'closed' = hooks.useConnectionState();
  const { members, count, synced } = hooks.usePresence('chat:lobby');
  const subs: string[] = members.map((m) => m.sub);
  void [subs, count + 1, synced && members[0]?.connections];
  // @ts-expect-error presence of a channel the schema does not allow
  hooks.usePresence('chta:lobby');
  return state;
}

export function Untyped(): string {
  useChannel<{ update: { n: number } }>('feed:1', (e) => {
    const n: number = e.data.n;
    void n;
    // @ts-expect-error an event type of the map only
    if (e.type === 'other') return;
  });
  // @ts-expect-error the handler is required
  useChannel('feed:1');
  const here: number = usePresence(null).count;
  void here;
  return useConnectionState();
}
