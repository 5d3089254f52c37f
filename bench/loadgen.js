'use strict';
/**
 * SSE load generator for `npm run bench` (plain JS, forked by bench/run.ts with an IPC channel).
 * For SSE and plain WebSocket fan-out runs the bench uses bench/loadgen.c by default (`--loadgen
 * native`): the same commands, parsing and figures at less CPU; this one serves `--loadgen js`,
 * Socket.IO, the storm, --capacity and --presence, and any machine without a C compiler.
 *
 * Opens N raw TCP connections (no HTTP client library), sends one GET per connection, and parses
 * the responses with a minimal parser: HTTP/1.1 status and headers, chunked transfer decoding, and
 * SSE frames only as far as the benchmark needs (the `"n":<seq>,"t":<ms>` the publisher embeds in
 * every message, and the `event: ready` frame of our service). Reads go into one shared buffer
 * (`onread`), so a read allocates nothing but a latin1 string.
 *
 * With `proto` `ws` (our `/live`, the `ws` reference) or `socketio` (Engine.IO 4 over WebSocket),
 * it opens raw WebSockets instead: the upgrade by hand, unmasked server frames parsed from the read
 * buffer, client frames masked with a zero key. `ws` with needReady sends `{"action":"ping"}` and is
 * ready at the `pong` (the subscriptions of the ticket exist by then); `socketio` sends the
 * namespace connect `40` after the open packet, is ready at its `40` answer, and answers pings `2` with `3`.
 *
 * Latency = receive time - send time, both from CLOCK_MONOTONIC (process.hrtime), which every
 * process on the machine shares. Kept as a histogram of 0.1 ms buckets (exact to 0.1 ms, bounded
 * memory for the soak); per connection a byte per message detects loss and duplicates.
 */
const http = require('node:http');
const net = require('node:net');

const BUCKET_MS = 0.1;
const MAX_BUCKET = 1_200_000; // 120 s
let hist = new Uint32Array(MAX_BUCKET + 1);
let histInterval = new Uint32Array(MAX_BUCKET + 1);
let maxLatency = 0;
let maxInterval = 0;

let conns = [];
let messages = 0; // messages expected per connection in the current window
let received = 0; // unique deliveries
let duplicates = 0;
let unknown = 0; // deliveries with n outside the window
let lastRecvMs = 0;
let firstRecvMs = 0;
let closedUnexpectedly = 0;
// Presence frames (bench/presence.ts): events by type, and `event: presence` snapshots with their bytes.
const presence = { join: 0, leave: 0, count: 0, snapshots: 0, snapshotBytes: 0 };
let cpuStart = process.cpuUsage();
let armed = false;
/** Set by `connect` with `presence: true`: SSE frames are also searched for presence frames. */
let countingPresence = false;

const nowMs = () => {
  const t = process.hrtime();
  return t[0] * 1e3 + t[1] / 1e6;
};

const shared = Buffer.allocUnsafe(256 * 1024);

class Conn {
  constructor(i) {
    this.i = i;
    this.sock = null;
    this.phase = 0; // 0 headers, 1 body
    this.head = '';
    this.chunked = false;
    this.rem = 0; // bytes left in the current chunk
    this.crlf = false; // expecting CRLF after chunk data
    this.pend = ''; // undecoded chunk-size line fragment
    this.carry = ''; // SSE text after the last complete frame
    this.ready = false;
    this.status = 0;
    this.seen = null;
    this.done = false;
  }
}

/** A masked client text frame (mask key 0: the payload goes as is). */
function clientFrame(text, opcode = 1) {
  const payload = Buffer.from(text);
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x80 | opcode, 0x80 | n, 0, 0, 0, 0]) : Buffer.from([0x80 | opcode, 0x80 | 126, n >> 8, n & 0xff, 0, 0, 0, 0]);
  return Buffer.concat([head, payload]);
}

/** Finds `"n":<seq>,"t":<sent>` pairs in `text` before `end` and records them. */
function scan(c, text, end, t) {
  let p = text.indexOf('"n":');
  while (p >= 0 && p < end) {
    const comma = text.indexOf(',', p + 4);
    const seq = +text.slice(p + 4, comma);
    const q = comma + 5; // ,"t":
    const stop = text.indexOf(',', q);
    const sent = +text.slice(q, stop);
    record(c, seq, t - sent, t);
    p = text.indexOf('"n":', stop);
  }
}

/** Counts the presence frames of the complete SSE frames in `text` before `end`. */
function countPresence(text, end) {
  for (let p = text.indexOf('"type":"presence.'); p >= 0 && p < end; p = text.indexOf('"type":"presence.', p + 17)) {
    const k = text.charCodeAt(p + 17);
    if (k === 0x6a /* j */) presence.join++;
    else if (k === 0x6c /* l */) presence.leave++;
    else if (k === 0x63 /* c */) presence.count++;
  }
  for (let p = text.indexOf('event: presence\n'); p >= 0 && p < end; p = text.indexOf('event: presence\n', p + 16)) {
    const e = text.indexOf('\n\n', p);
    presence.snapshots++;
    presence.snapshotBytes += e - p + 2;
  }
}

/** One WebSocket message (text, as latin1) for `c`. */
function onMessage(c, opcode, text, t) {
  if (opcode === 9) {
    c.sock.write(clientFrame(text, 10));
    return;
  }
  if (opcode !== 1) return;
  if (c.proto === 'socketio') {
    const k = text.charCodeAt(0);
    if (k === 0x32 /* 2: ping */ && text.length === 1) c.sock.write(clientFrame('3'));
    else if (k === 0x30 /* 0: open */ && !c.sentConnect) {
      c.sentConnect = true;
      c.sock.write(clientFrame('40'));
    } else if (text.startsWith('40')) {
      if (!c.ready) c.markReady();
    } else if (text.startsWith('42')) scan(c, text, text.length, t);
    return;
  }
  if (!c.ready && c.needReady) {
    if (text.includes('"pong"')) c.markReady();
    return;
  }
  scan(c, text, text.length, t);
}

/** A read on a WebSocket connection: the upgrade answer, then frames. */
function onWsData(c, s, t) {
  if (c.phase === 0) {
    c.head += s;
    const e = c.head.indexOf('\r\n\r\n');
    if (e < 0) return;
    const head = c.head.slice(0, e);
    s = c.head.slice(e + 4);
    c.head = '';
    c.phase = 1;
    c.status = Number(head.slice(9, 12));
    if (c.status !== 101) {
      c.fail(`HTTP ${c.status}`);
      return;
    }
    if (c.proto === 'ws') {
      if (c.needReady) c.sock.write(clientFrame('{"action":"ping"}'));
      else c.markReady();
    }
  }
  if (c.carry) s = c.carry + s;
  const len = s.length;
  let i = 0;
  for (;;) {
    if (len - i < 2) break;
    const b1 = s.charCodeAt(i + 1) & 0x7f;
    let hdr = 2;
    let plen = b1;
    if (b1 === 126) {
      if (len - i < 4) break;
      hdr = 4;
      plen = (s.charCodeAt(i + 2) << 8) | s.charCodeAt(i + 3);
    } else if (b1 === 127) {
      if (len - i < 10) break;
      hdr = 10;
      plen = 0;
      for (let k = 2; k < 10; k++) plen = plen * 256 + s.charCodeAt(i + k);
    }
    if (len - i < hdr + plen) break;
    onMessage(c, s.charCodeAt(i) & 0x0f, s.substr(i + hdr, plen), t);
    i += hdr + plen;
  }
  c.carry = i < len ? s.slice(i) : '';
}

/** Handles one read of `n` bytes in `buf` for `c`. */
function onData(c, n, buf) {
  const t = nowMs();
  let s = buf.latin1Slice(0, n);
  if (c.proto !== 'sse') {
    onWsData(c, s, t);
    return;
  }
  if (c.phase === 0) {
    c.head += s;
    const e = c.head.indexOf('\r\n\r\n');
    if (e < 0) {
      if (c.head.length > 16384) c.sock.destroy();
      return;
    }
    const head = c.head.slice(0, e);
    s = c.head.slice(e + 4);
    c.head = '';
    c.phase = 1;
    c.status = Number(head.slice(9, 12));
    c.chunked = /\r\ntransfer-encoding:\s*chunked/i.test(head);
    if (c.status !== 200) {
      c.fail(`HTTP ${c.status}`);
      return;
    }
    if (!c.needReady) c.markReady();
    if (!s.length) return;
  }
  let text;
  if (c.chunked) {
    if (c.pend) {
      s = c.pend + s;
      c.pend = '';
    }
    text = '';
    let i = 0;
    const len = s.length;
    while (i < len) {
      if (c.rem > 0) {
        const take = c.rem < len - i ? c.rem : len - i;
        text += take === len && i === 0 ? s : s.substr(i, take);
        i += take;
        c.rem -= take;
        if (c.rem === 0) c.crlf = true;
        continue;
      }
      if (c.crlf) {
        if (len - i < 2) {
          c.pend = s.slice(i);
          break;
        }
        i += 2;
        c.crlf = false;
        continue;
      }
      const e = s.indexOf('\r\n', i);
      if (e < 0) {
        c.pend = s.slice(i);
        break;
      }
      const size = parseInt(s.slice(i, e), 16);
      i = e + 2;
      if (size === 0) break; // end of body
      c.rem = size;
    }
  } else {
    text = s;
  }
  if (!text.length) return;
  if (c.carry) text = c.carry + text;
  const end = text.lastIndexOf('\n\n');
  if (end < 0) {
    c.carry = text;
    return;
  }
  c.carry = end + 2 < text.length ? text.slice(end + 2) : '';
  if (!c.ready && c.needReady) {
    const r = text.indexOf('event: ready');
    if (r >= 0 && r < end) c.markReady();
  }
  if (countingPresence) countPresence(text, end);
  scan(c, text, end, t);
}

function record(c, seq, lat, t) {
  if (!armed || !(seq >= 0 && seq < messages) || !c.seen) {
    unknown++;
    return;
  }
  if (c.seen[seq]) {
    duplicates++;
    return;
  }
  c.seen[seq] = 1;
  received++;
  if (!firstRecvMs) firstRecvMs = t;
  lastRecvMs = t;
  let b = Math.round(lat / BUCKET_MS);
  if (b < 0) b = 0;
  if (b > MAX_BUCKET) b = MAX_BUCKET;
  hist[b]++;
  histInterval[b]++;
  if (lat > maxLatency) maxLatency = lat;
  if (lat > maxInterval) maxInterval = lat;
}

function percentile(h, total, q) {
  if (total === 0) return null;
  const want = Math.ceil(total * q);
  let acc = 0;
  for (let i = 0; i < h.length; i++) {
    acc += h[i];
    if (acc >= want) return +(i * BUCKET_MS).toFixed(1);
  }
  return null;
}

function sum(h) {
  let n = 0;
  for (let i = 0; i < h.length; i++) n += h[i];
  return n;
}

function openOne(c, opts) {
  return new Promise((resolve) => {
    let settled = false;
    const finish = (ok, err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ ok, err });
    };
    c.needReady = opts.needReady;
    c.proto = opts.proto || 'sse';
    c.markReady = () => {
      c.ready = true;
      finish(true);
    };
    c.fail = (err) => {
      finish(false, err);
      c.sock.destroy();
    };
    const timer = setTimeout(() => c.fail('timeout'), opts.timeoutMs);
    const sock = net.connect({
      host: opts.host,
      port: opts.port,
      // Several loopback source addresses (127.0.0.x) get past one address's ~28k ephemeral ports.
      ...(opts.localAddresses && opts.localAddresses.length ? { localAddress: opts.localAddresses[c.i % opts.localAddresses.length] } : {}),
      onread: { buffer: shared, callback: (n, buf) => onData(c, n, buf) },
    });
    c.sock = sock;
    sock.setNoDelay(true);
    sock.on('connect', () => {
      const resume = opts.lastEventId ? `Last-Event-ID: ${opts.lastEventId}\r\n` : '';
      if (c.proto === 'sse') sock.write(`GET ${opts.paths[c.i]} HTTP/1.1\r\nHost: ${opts.host}:${opts.port}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n${resume}\r\n`);
      else {
        const key = Buffer.from(`loadgen-key-${String(c.i).padStart(4, '0')}`).subarray(0, 16).toString('base64');
        sock.write(`GET ${opts.paths[c.i]} HTTP/1.1\r\nHost: ${opts.host}:${opts.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
      }
    });
    sock.on('error', (e) => finish(false, e.code || String(e)));
    sock.on('close', () => {
      if (!c.done && c.ready) closedUnexpectedly++;
      c.done = true;
      finish(false, 'closed');
    });
  });
}

async function connectAll(opts) {
  const started = nowMs();
  let next = 0;
  let failed = 0;
  let firstErr;
  const n = opts.paths.length;
  conns = [];
  for (let i = 0; i < n; i++) conns.push(new Conn(i));
  async function worker() {
    while (next < n) {
      const c = conns[next++];
      const r = await openOne(c, opts);
      if (!r.ok) {
        failed++;
        if (!firstErr) firstErr = r.err;
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(opts.concurrency, n) }, worker));
  return { ok: n - failed, failed, ms: nowMs() - started, firstErr };
}

/**
 * POSTs `body` (JSON) to `url` through node:http on a keep-alive agent and resolves with the status and the parsed
 * answer. Not `fetch`: with undici's fetch the load generator used 60–72 % of a core over a 10k storm and the ticket
 * round trips queued (mean 0.11–2.4 s), so the clients reached the server in bunches and late; with this, 27–35 % and
 * 3–166 ms, and the last client is back at the window's end (docs/BENCHMARKS.md, "The storm's arrivals").
 */
function postJson(url, headers, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent: ticketAgent, headers: { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode, body: JSON.parse(text) });
        } catch (e) {
          reject(new Error(`ticket HTTP ${res.statusCode}: ${text.slice(0, 200)}`));
        }
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}
const ticketAgent = new http.Agent({ keepAlive: true, maxSockets: 64 });

/** Client i's ticket from the ticket API (user `u<i>`, its channel). */
async function fetchTicket(opts, i) {
  const r = await postJson(opts.ticketUrl, { 'x-local-user': `u${i}` }, JSON.stringify({ channels: [opts.channels ? opts.channels[i] : opts.channel] }));
  if (r.status !== 201) throw new Error(`ticket HTTP ${r.status}: ${JSON.stringify(r.body).slice(0, 200)}`);
  return r.body.ticket;
}

/** Tickets fetched by `stormTickets`, by client, for a storm with `heldTickets`. */
let heldTickets = [];

/**
 * `stormTickets`: each of `n` clients fetches its own ticket from `ticketUrl` now (64 at a time, the agent's sockets),
 * and holds it for the next storm with `heldTickets`: that storm's arrivals are then its connects alone.
 */
async function stormTickets(opts) {
  const started = nowMs();
  heldTickets = new Array(opts.n);
  let failed = 0;
  let firstErr;
  await Promise.all(
    Array.from({ length: opts.n }, (_, i) =>
      fetchTicket(opts, i).then(
        (t) => (heldTickets[i] = t),
        (e) => {
          failed++;
          if (!firstErr) firstErr = String(e && e.message ? e.message : e);
        },
      ),
    ),
  );
  return { ok: opts.n - failed, failed, firstErr, ms: nowMs() - started };
}

/** A deterministic pseudo-random sequence (mulberry32): the same storm for the same seed. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The reconnect storm: `n` clients come back, each `minDelayMs + jitter` after the call (uniform up to
 * `maxDelayMs`, seeded), each first POSTing its own ticket request to `ticketUrl` (the local stack's
 * ticket API, user `u<i>` in `x-local-user`) and then opening its stream with `Last-Event-ID`. With
 * `messages` > 0 the window is armed first, so the catch-up events the server replays are counted.
 * `channels` and `lastEventIds` (arrays by client), when given, replace `channel` and `lastEventId`. `plainPath`, when
 * given, is every client's request path (a peer without tickets; the ticket is still fetched, for the same arrivals).
 */
async function storm(opts) {
  const n = opts.n;
  const rnd = prng(opts.seed || 1);
  armed = false;
  resetWindow(opts.messages || 0);
  conns = [];
  const paths = new Array(n);
  const started = nowMs();
  let failed = 0;
  let ticketFailed = 0;
  let firstErr;
  let ticketMsTotal = 0;
  let lastReady = 0;
  const held = opts.heldTickets ? heldTickets : null;
  const one = async (i) => {
    const t0 = nowMs();
    let ticket;
    try {
      if (held) {
        if (!held[i]) throw new Error('no ticket held for this client (stormTickets failed for it)');
        ticket = held[i];
      } else ticket = await fetchTicket(opts, i);
    } catch (e) {
      ticketFailed++;
      failed++;
      if (!firstErr) firstErr = String(e && e.message ? e.message : e);
      return;
    }
    ticketMsTotal += nowMs() - t0;
    // A peer without auth (`plainPath`, the probe's or ref's `/events`) gets the same ticket round trip first, so its
    // clients arrive as ours do, and ignores it.
    paths[i] = opts.plainPath || `/events?channels=${encodeURIComponent(opts.channels ? opts.channels[i] : opts.channel)}&ticket=${ticket}`;
    const c = new Conn(i);
    c.seen = opts.messages ? new Uint8Array(opts.messages) : null;
    conns.push(c);
    const r = await openOne(c, { ...opts, paths, lastEventId: opts.lastEventIds ? opts.lastEventIds[i] : opts.lastEventId });
    if (!r.ok) {
      failed++;
      if (!firstErr) firstErr = r.err;
    } else lastReady = nowMs();
  };
  const all = [];
  for (let i = 0; i < n; i++) {
    const delay = opts.minDelayMs + rnd() * (opts.maxDelayMs - opts.minDelayMs);
    all.push(new Promise((res) => setTimeout(() => one(i).then(res, res), delay)));
  }
  armed = (opts.messages || 0) > 0;
  await Promise.all(all);
  return { ok: n - failed, failed, ticketFailed, firstErr, ms: nowMs() - started, lastReadyMs: lastReady - started, ticketMsMean: ticketMsTotal / Math.max(1, n - ticketFailed) };
}

function resetWindow(m) {
  messages = m;
  received = 0;
  duplicates = 0;
  unknown = 0;
  lastRecvMs = 0;
  firstRecvMs = 0;
  maxLatency = 0;
  maxInterval = 0;
  hist = new Uint32Array(MAX_BUCKET + 1);
  histInterval = new Uint32Array(MAX_BUCKET + 1);
  for (const c of conns) c.seen = c.ready ? new Uint8Array(m) : null;
  cpuStart = process.cpuUsage();
  armed = true;
}

function cpuMs() {
  const u = process.cpuUsage(cpuStart);
  return (u.user + u.system) / 1000;
}

process.on('message', async (msg) => {
  try {
    switch (msg.cmd) {
      case 'connect': {
        if (msg.presence) countingPresence = true;
        const r = await connectAll(msg);
        process.send({ cmd: 'connected', ...r });
        break;
      }
      case 'stormTickets': {
        const r = await stormTickets(msg);
        process.send({ cmd: 'stormTicketsHeld', ...r });
        break;
      }
      case 'storm': {
        const r = await storm(msg);
        process.send({ cmd: 'stormed', ...r });
        break;
      }
      case 'arm':
        resetWindow(msg.messages);
        process.send({ cmd: 'armed', open: conns.filter((c) => c.ready && !c.done).length });
        break;
      case 'status': {
        const n = sum(histInterval);
        const out = {
          cmd: 'status',
          received,
          duplicates,
          lastRecvMs,
          open: conns.filter((c) => c.ready && !c.done).length,
          closedUnexpectedly,
          cpuMs: cpuMs(),
          presence,
          interval: { n, p50: percentile(histInterval, n, 0.5), p99: percentile(histInterval, n, 0.99), max: +maxInterval.toFixed(1) },
        };
        if (msg.resetInterval) {
          histInterval = new Uint32Array(MAX_BUCKET + 1);
          maxInterval = 0;
        }
        process.send(out);
        break;
      }
      case 'report': {
        const n = sum(hist);
        const open = conns.filter((c) => c.seen);
        let minPerConn = Infinity;
        let incomplete = 0;
        for (const c of open) {
          let k = 0;
          for (let i = 0; i < c.seen.length; i++) k += c.seen[i];
          if (k < minPerConn) minPerConn = k;
          if (k < c.seen.length) incomplete++;
        }
        process.send({
          cmd: 'report',
          received,
          duplicates,
          unknown,
          firstRecvMs,
          lastRecvMs,
          closedUnexpectedly,
          incompleteConnections: incomplete,
          minPerConnection: open.length ? minPerConn : 0,
          p50: percentile(hist, n, 0.5),
          p90: percentile(hist, n, 0.9),
          p99: percentile(hist, n, 0.99),
          max: +maxLatency.toFixed(1),
          cpuMs: cpuMs(),
        });
        break;
      }
      case 'close':
        armed = false;
        for (const c of conns) {
          c.done = true;
          if (c.sock && !c.sock.destroyed) {
            // RST instead of FIN: no TIME_WAIT on the client side, so runs do not eat ephemeral ports.
            if (typeof c.sock.resetAndDestroy === 'function' && c.sock.readyState === 'open') c.sock.resetAndDestroy();
            else c.sock.destroy();
          }
        }
        conns = [];
        process.send({ cmd: 'closed' });
        break;
      case 'exit':
        process.exit(0);
    }
  } catch (err) {
    process.send({ cmd: 'error', message: String(err && err.stack ? err.stack : err) });
  }
});

process.on('disconnect', () => process.exit(0));
process.send({ cmd: 'hello', pid: process.pid });
