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
const CHAT = params.get('chat') || 'room:demo';
const SCORES = params.get('scores') || 'scores:demo';

/** What the page received, for a look in the console (and for the end-to-end test). */
const demo = (window.demo = { chat: [], scores: [], states: { chat: [], score: [] }, resets: 0, rebuilds: 0, who: [], joins: [], leaves: [] });

/**
 * Keeps a view equal to the fold of `channel`'s retained history and its live events. On load (no
 * `since`) and after a `reset` (history could not cover the gap, or ids were lost in a failover) it
 * clears the view and subscribes again from the first retained event: `since: '0'` replays the whole
 * retained history, then live. A `reset` before anything was applied is that replay's own (history
 * no longer reaches back to the start): the view is already cleared. (Until a history API, issue
 * 25, this is how to read history.) With `since` (a transport switch) it resumes instead.
 */
function follow(client, channel, { clear, apply }, since) {
  let applied = 0;
  const start = (from) => {
    applied = 0;
    if (from === '0') {
      clear();
      demo.rebuilds++;
    }
    client.unsubscribe(channel);
    client.subscribe(channel, {
      since: from,
      onEvent: (e) => {
        applied++;
        apply(e);
      },
      onReset: () => {
        demo.resets++;
        // After the current frame: the client finishes delivering it to the handler being replaced.
        if (applied) queueMicrotask(() => start('0'));
      },
    });
  };
  start(since ?? '0');
}

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
follow(chat, CHAT, {
  clear: () => {
    demo.chat = [];
    $('messages').replaceChildren();
  },
  apply: (e) => {
    // The channel also carries its presence events (presence.join, presence.leave): the list above shows them.
    if (e.type !== 'message') return;
    demo.chat.push(e.data);
    const li = document.createElement('li');
    const who = document.createElement('b');
    who.textContent = e.data.from;
    li.append(who, document.createTextNode(e.data.text));
    $('messages').append(li);
    $('messages').scrollTop = 1e9;
  },
});
// Who is in the chat: the channel's presence (a member per user, however many tabs; one whose last tab closed stays
// for the grace period, greyed here, and leaves if it does not come back).
const who = chat.presence(CHAT);
who.onJoin((m) => demo.joins.push(m.sub));
who.onLeave((m) => demo.leaves.push(m.sub));
who.onChange(() => {
  const members = [...who.members()].sort((a, b) => (a.sub < b.sub ? -1 : 1));
  demo.who = members.map((m) => m.sub);
  $('who-count').textContent = who.count();
  $('who').replaceChildren(
    ...members.map((m) => {
      const el = document.createElement('span');
      el.textContent = m.sub === user ? `${m.sub} (you)` : m.sub;
      if (!m.connections) el.className = 'away';
      return el;
    }),
  );
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
const showBoard = () => {
  $('home').textContent = board.home;
  $('away').textContent = board.away;
  $('count').textContent = demo.scores.length;
  $('last').textContent = since ?? 'none';
};
function connectScores(transport) {
  scoreClient?.close();
  scoreClient = createClient({ ticket, transports: [transport, 'sse', 'poll'].filter((t, i, a) => a.indexOf(t) === i), storage: null });
  scoreClient.on('state', (s) => {
    demo.states.score.push(s);
    showState($('score-state'), s);
    $('score-transport').textContent = scoreClient.transport || 'none';
  });
  follow(
    scoreClient,
    SCORES,
    {
      clear: () => {
        board.home = board.away = 0;
        demo.scores = [];
        since = undefined;
        showBoard();
      },
      apply: (e) => {
        since = e.id;
        demo.scores.push(e.data);
        if (e.data.team in board) board[e.data.team]++;
        showBoard();
      },
    },
    since,
  );
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
