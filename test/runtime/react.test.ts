/**
 * @jest-environment ./test/support/jsdom-fetch-env.js
 */
/**
 * The React bindings (client/src/react.ts) rendered by react-dom in jsdom against the local stack (`npm run dev`
 * in its own process, as a page's backend would be): real tickets, events published through POST /publish and
 * delivered over SSE (fetch streaming) or jsdom's WebSocket; the DOM is read once it shows what the test waits for.
 */
import { createElement, StrictMode, useState, type ReactNode } from 'react';
import { createRoot, type Root } from 'react-dom/client';
import { flushSync } from 'react-dom';
import { createClient, createTypedClient, ticketFrom, type Client, type Envelope, type TicketRequest, type Transport } from '../../client/src/index';
import { createRealtimeHooks, RealtimeProvider, useChannel, useConnectionState, usePresence } from '../../client/src/react';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..');
let dev: ChildProcess;
const stack = { outputs: {} as Record<'TicketUrl' | 'PublishUrl', string> };
beforeAll(async () => {
  const file = join(mkdtempSync(join(tmpdir(), 'realtime-react-')), 'outputs.json');
  // jsdom's pages are on http://localhost (its WebSocket sends that Origin).
  dev = spawn(join(ROOT, 'node_modules', '.bin', 'tsx'), ['local/dev.ts', '--port', '0', '--sse-port', '0', '--ws-port', '0', '--outputs-file', file, '--allow-origin', 'http://localhost'], {
    cwd: ROOT,
    stdio: 'ignore',
    env: { ...process.env, LOG_LEVEL: 'warn' },
  });
  const deadline = Date.now() + 30_000;
  while (!existsSync(file)) {
    if (Date.now() > deadline || dev.exitCode !== null) throw new Error('npm run dev did not write its outputs file');
    await new Promise((r) => setTimeout(r, 50));
  }
  stack.outputs = JSON.parse(readFileSync(file, 'utf8'))['Realtime-local'];
}, 40_000);
afterAll(async () => {
  if (dev.exitCode !== null) return;
  const exited = new Promise((resolve) => dev.once('exit', resolve));
  dev.kill('SIGTERM');
  await exited;
});

let n = 0;
const channel = () => `chat:react-${process.pid}-${++n}`;
const until = async (pred: () => boolean, what: string, timeoutMs = 15_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; DOM: ${document.body.innerHTML}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};
const publish = async (ch: string, text: string, type = 'message') => {
  const r = await fetch(stack.outputs.PublishUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ channel: ch, type, data: { text } }) });
  expect(r.status).toBe(202);
  return ((await r.json()) as { id: string }).id;
};
const tickets = () => {
  const calls: TicketRequest[] = [];
  const inner = ticketFrom(stack.outputs.TicketUrl, { headers: { 'x-local-user': 'react-user' } });
  return Object.assign((req: TicketRequest) => (calls.push(req), inner(req)), { calls });
};
// A generous open timeout: the tests count tickets, and a slow first open on a loaded machine would cost a second.
const clientOn = (transports: Transport[], ticket = tickets()) => createClient({ ticket, transports, storage: null, openTimeoutMs: 20_000 });

function Status() {
  return createElement('p', { id: 'state' }, useConnectionState());
}
function Messages(props: { channel: string; id: string; onEvent?: (e: Envelope) => void }) {
  const [lines, setLines] = useState<string[]>([]);
  useChannel<{ message: { text: string } }>(props.channel, (e) => {
    props.onEvent?.(e as Envelope);
    setLines((l) => [...l, e.data.text]);
  });
  return createElement('ul', { id: props.id }, ...lines.map((t, i) => createElement('li', { key: i }, t)));
}
const texts = (id: string) => Array.from(document.querySelectorAll(`#${id} li`)).map((li) => li.textContent);
const stateText = () => document.getElementById('state')?.textContent;

let root: Root | undefined;
let client: Client | undefined;
const render = (node: ReactNode) => flushSync(() => root!.render(node));
beforeEach(() => {
  document.body.innerHTML = '<div id="app"></div>';
  root = createRoot(document.getElementById('app')!);
});
afterEach(() => {
  root?.unmount();
  client?.close();
  client = undefined;
});

test.each([['sse'], ['ws']] as [Transport][])('%s: useConnectionState shows connecting then open; useChannel renders each published event once, in order', async (transport) => {
  const ch = channel();
  client = clientOn([transport]);
  render(createElement(RealtimeProvider, { client }, createElement(Status), createElement(Messages, { channel: ch, id: 'm' })));
  expect(stateText()).toBe('connecting');
  await until(() => stateText() === 'open', 'open');
  expect(client.transport).toBe(transport);
  for (const t of ['one', 'two', 'three']) await publish(ch, t);
  await until(() => texts('m').length === 3, 'three events');
  expect(texts('m')).toEqual(['one', 'two', 'three']);
  client.close();
  await until(() => stateText() === 'closed', 'closed');
});

test('two components on one channel share one subscription; unmounting one leaves the other receiving, the last one unsubscribes', async () => {
  const ch = channel();
  const ticket = tickets();
  client = clientOn(['sse'], ticket);
  const seenA: string[] = [];
  const seenB: string[] = [];
  const app = (both: boolean) =>
    createElement(
      RealtimeProvider,
      { client: client! },
      createElement(Status),
      both ? createElement(Messages, { key: 'a', channel: ch, id: 'a', onEvent: (e) => seenA.push(e.id) }) : null,
      createElement(Messages, { key: 'b', channel: ch, id: 'b', onEvent: (e) => seenB.push(e.id) }),
    );
  render(app(true));
  await until(() => stateText() === 'open', 'open');
  const first = await publish(ch, 'to both');
  await until(() => texts('a').length === 1 && texts('b').length === 1, 'both components');
  expect([seenA, seenB]).toEqual([[first], [first]]);
  expect(ticket.calls.map((c) => c.channels)).toEqual([[ch]]);

  render(app(false));
  const second = await publish(ch, 'to b');
  // Both handlers run in the same delivery: once B has it, A would have had it too.
  await until(() => seenB.length === 2, 'b receives after a unmounted');
  expect([seenA, seenB]).toEqual([[first], [first, second]]);
  expect(client.state).toBe('open');

  root!.unmount();
  root = undefined;
  // The last listener gone, the client has no channel left and ends its connection.
  await until(() => client!.transport === undefined && client!.state === 'connecting', 'the connection ended');
});

test('a new handler on each render is called without resubscribing; StrictMode\'s double mount costs no reconnect', async () => {
  const ch = channel();
  const ticket = tickets();
  client = clientOn(['sse'], ticket);
  const got: string[] = [];
  function Labelled(props: { label: string }) {
    useChannel<{ message: { text: string } }>(ch, (e) => got.push(`${props.label}:${e.data.text}`));
    return createElement('span', { id: 'label' }, props.label);
  }
  const app = (label: string) => createElement(StrictMode, null, createElement(RealtimeProvider, { client: client! }, createElement(Status), createElement(Labelled, { label })));
  render(app('first'));
  await until(() => stateText() === 'open', 'open');
  await publish(ch, 'x');
  await until(() => got.length === 1, 'x');
  render(app('second'));
  await until(() => document.getElementById('label')?.textContent === 'second', 'rerender');
  await publish(ch, 'y');
  await until(() => got.length === 2, 'y');
  expect(got).toEqual(['first:x', 'second:y']);
  expect(ticket.calls).toHaveLength(1);
});

test('typed hooks: createRealtimeHooks<Schema>() with a typed client; a backend goal and useClient().publish over the WebSocket reach useChannel', async () => {
  type Schema = { 'chat:*': { message: { text: string } }; 'scores:*': { goal: { team: 'home' | 'away' } } };
  const hooks = createRealtimeHooks<Schema>();
  const typedClient = createTypedClient<Schema>({ ticket: tickets(), transports: ['ws'], storage: null, openTimeoutMs: 20_000 });
  client = typedClient as unknown as Client;
  const scores = `scores:react-${process.pid}` as const;
  const chat = `chat:react-typed-${process.pid}` as const;
  const seen: string[] = [];
  let say: ((text: string) => Promise<unknown>) | undefined;
  function Match() {
    const c = hooks.useClient();
    say = (text) => c.publish(chat, 'message', { text });
    hooks.useChannel(scores, (e) => seen.push(`goal:${e.data.team}`));
    hooks.useChannel(chat, (e) => seen.push(`chat:${e.data.text}`));
    return createElement('b', { id: 'state' }, hooks.useConnectionState());
  }
  render(createElement(RealtimeProvider, { client: typedClient }, createElement(Match)));
  await until(() => stateText() === 'open', 'open');
  const r = await fetch(stack.outputs.PublishUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ channel: scores, type: 'goal', data: { team: 'away' } }) });
  expect(r.status).toBe(202);
  await until(() => seen.includes('goal:away'), 'the goal');
  await say!('what a goal');
  await until(() => seen.includes('chat:what a goal'), 'the chat message');
  expect(seen).toEqual(['goal:away', 'chat:what a goal']);
});

test('usePresence: the channel\'s members as they join and leave (room: the namespace `npm run dev` adds, presence on); the last unmount closes it', async () => {
  const room = `room:react-${process.pid}-${++n}`;
  client = clientOn(['sse']);
  function Who() {
    const { members, count, synced } = usePresence(room);
    return createElement('ul', { id: 'who', 'data-synced': String(synced), 'data-count': count }, ...members.map((m) => createElement('li', { key: m.sub }, `${m.sub}:${m.connections}`)));
  }
  render(createElement(RealtimeProvider, { client }, createElement(Who)));
  await until(() => texts('who').join() === 'react-user:1', 'react-user present');
  expect(document.getElementById('who')!.getAttribute('data-synced')).toBe('true');
  // Another user on the WebSocket joins; then leaves, after the grace (5 s).
  const inner = ticketFrom(stack.outputs.TicketUrl, { headers: { 'x-local-user': 'other-user' } });
  const other = createClient({ ticket: inner, transports: ['ws'], storage: null, openTimeoutMs: 20_000 });
  other.presence(room);
  await until(() => texts('who').sort().join() === 'other-user:1,react-user:1', 'other-user joins');
  other.close();
  await until(() => texts('who').join() === 'react-user:1', 'other-user leaves', 20_000);
  expect(document.getElementById('who')!.getAttribute('data-count')).toBe('1');
  root!.unmount();
  root = undefined;
  await until(() => client!.transport === undefined, 'the channel unsubscribed after the last unmount');
}, 40_000);

test('a hook outside a RealtimeProvider: an error that says what to add', () => {
  const errors: unknown[] = [];
  const onError = (e: ErrorEvent) => {
    errors.push(e.error);
    e.preventDefault();
  };
  window.addEventListener('error', onError);
  const spy = jest.spyOn(console, 'error').mockImplementation(() => undefined);
  try {
    root = createRoot(document.getElementById('app')!, { onUncaughtError: (e) => void errors.push(e) });
    render(createElement(Status));
  } finally {
    spy.mockRestore();
    window.removeEventListener('error', onError);
  }
  expect(String(errors[0])).toMatch(/need a <RealtimeProvider client=\{client\}> above the component/);
});
