// The demo app: plain browser JavaScript over the built client (/demo/client.js, the package's dist).
import { createClient, ticketFrom } from './client.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const user = params.get('user') || `guest-${Math.random().toString(36).slice(2, 6)}`;
$('user').value = user;
$('user').addEventListener('change', () => {
  params.set('user', $('user').value);
  location.search = params.toString();
});

// The local stack stands in for a JWT with the x-local-user header; a real app sends its Authorization.
const ticket = ticketFrom('/tickets', { headers: { 'x-local-user': user } });
const CHAT = params.get('chat') || 'chat:demo';
const SCORES = params.get('scores') || 'scores:demo';

/** What the page received, for a look in the console (and for the end-to-end test). */
const demo = (window.demo = { chat: [], scores: [], states: { chat: [], score: [] }, resets: 0 });

const showState = (el, s) => {
  el.textContent = s;
  el.className = `state ${s}`;
};

// Chat: a WebSocket client that subscribes and publishes.
const chat = createClient({ ticket, transports: ['ws'] });
chat.on('state', (s) => {
  demo.states.chat.push(s);
  showState($('chat-state'), s);
});
chat.on('error', (e) => ($('chat-error').textContent = `${e.code}: ${e.message}`));
chat.subscribe(CHAT, {
  onEvent: (e) => {
    demo.chat.push(e.data);
    const li = document.createElement('li');
    const who = document.createElement('b');
    who.textContent = e.data.from;
    li.append(who, document.createTextNode(e.data.text));
    $('messages').append(li);
    $('messages').scrollTop = 1e9;
  },
});
$('send').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = ev.target.elements.text;
  const text = input.value;
  input.value = '';
  try {
    await chat.publish(CHAT, 'message', { from: user, text });
    $('chat-error').textContent = '';
  } catch (e) {
    $('chat-error').textContent = `not sent: ${e.code}`;
  }
});

// Scoreboard: a client per chosen transport; a switch resumes from the last id it delivered.
const board = { home: 0, away: 0 };
let scoreClient;
let since;
function connectScores(transport) {
  scoreClient?.close();
  scoreClient = createClient({ ticket, transports: [transport, 'sse', 'poll'].filter((t, i, a) => a.indexOf(t) === i), storage: null });
  scoreClient.on('state', (s) => {
    demo.states.score.push(s);
    showState($('score-state'), s);
    $('score-transport').textContent = scoreClient.transport || 'none';
  });
  scoreClient.subscribe(SCORES, {
    since,
    onEvent: (e) => {
      since = e.id;
      demo.scores.push(e.data);
      if (e.data.team in board) board[e.data.team]++;
      $('home').textContent = board.home;
      $('away').textContent = board.away;
      $('count').textContent = demo.scores.length;
      $('last').textContent = e.id;
    },
    onReset: () => demo.resets++,
  });
}
$('transport').value = params.get('transport') || 'sse';
connectScores($('transport').value);
$('transport').addEventListener('change', () => connectScores($('transport').value));
window.switchScoreTransport = (t) => {
  $('transport').value = t;
  connectScores(t);
};

for (const team of ['home', 'away']) {
  $(`goal-${team}`).addEventListener('click', () =>
    fetch('/publish', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ channel: SCORES, type: 'goal', data: { team, n: demo.scores.length } }) }),
  );
}
