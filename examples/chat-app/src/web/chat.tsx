/** The page: a chat room and a scoreboard, on typed channels and the React bindings. */
import { useState } from 'react';
import { createRealtimeHooks } from '@realtime-blueprint/client/react';
import { MATCH, ROOM, type Schema } from '../schema.js';

const { useChannel, useConnectionState, useClient } = createRealtimeHooks<Schema>();

export function Scoreboard() {
  const [score, setScore] = useState({ home: 0, away: 0 });
  useChannel(MATCH, (e) => setScore((s) => ({ ...s, [e.data.team]: s[e.data.team] + 1 })), {
    // History could not cover a gap: a real app reloads the score from its backend here.
    onReset: () => setScore({ home: 0, away: 0 }),
  });
  return (
    <p className="score">
      home {score.home} : {score.away} away
    </p>
  );
}

export function Chat(props: { me: string }) {
  const client = useClient();
  const [lines, setLines] = useState<{ id: string; from: string; text: string }[]>([]);
  const [draft, setDraft] = useState('');
  useChannel(ROOM, (e) => setLines((l) => [...l, { id: e.id, from: e.data.from, text: e.data.text }]));
  const send = () => {
    // Typed: 'message' with { from, text } is the only event chat:* takes.
    void client.publish(ROOM, 'message', { from: props.me, text: draft }).catch((err: unknown) => console.warn(err));
    setDraft('');
  };
  return (
    <section>
      <ul>
        {lines.map((l) => (
          <li key={l.id}>
            <b>{l.from}</b> {l.text}
          </li>
        ))}
      </ul>
      <input value={draft} onChange={(e) => setDraft(e.target.value)} />
      <button onClick={send}>send</button>
    </section>
  );
}

export function App(props: { me: string }) {
  const state = useConnectionState();
  return (
    <main>
      <p className="state">{state}</p>
      <Scoreboard />
      <Chat me={props.me} />
    </main>
  );
}
