'use strict';
/**
 * The fan-out path alone, in user space (docs/BENCHMARKS.md, "Per write, syscall by syscall"): 8k sessions of one
 * channel over SSE transports and one flush window, two events per window, a sink that keeps nothing (no socket, no
 * kernel). Prints CPU ns per delivery. `npx tsx bench/fanout-path.js [ROOT] [ROUNDS]`: ROOT is a checkout to load
 * service/ from (default this one), e.g. a `git archive REV | tar -x -C DIR` of an older revision, for a before/after.
 */
const root = process.argv[2] || require('node:path').join(__dirname, '..');
const { FlushWindow } = require(root + '/service/flush-window');
const { LiveEvent } = require(root + '/service/hub');
const { Session } = require(root + '/service/session');
const { SseTransport } = require(root + '/service/sse-transport');
const N = 8000, ROUNDS = Number(process.argv[3] || 300), PER = 2;
let bytes = 0;
const sink = { write(c) { bytes += c.length; }, end() {}, destroy() {}, queuedBytes() { return 0; }, onDrain(cb) { cb(); } };
const due = [];
const window = new FlushWindow({ scheduler: { immediate: (fn) => due.push(fn), timeout: (fn) => due.push(fn) } });
const policy = { maxHeld: 1000, heldOverflow() {}, slow() {} };
const sessions = [];
for (let i = 0; i < N; i++) {
  const sinkI = Object.create(sink);
  const t = new SseTransport(sinkI, window, 1 << 20, 3000);
  const s = new Session('stream', t, ['bench'], policy);
  s.startAt([0]);
  s.goLive([0]);
  sessions.push(s);
}
while (due.length) due.shift()();
const payload = 'x'.repeat(200);
let seq = 1;
function round() {
  for (let k = 0; k < PER; k++) {
    const env = JSON.stringify({ channel: 'bench', id: String(seq++), type: 'msg', data: payload, ts: Date.now() });
    const e = new LiveEvent('bench'.slice(0), env);
    for (let i = 0; i < N; i++) sessions[i].onEvent(e);
  }
  while (due.length) due.shift()();
}
for (let r = 0; r < 100; r++) round();
const t0 = process.cpuUsage();
for (let r = 0; r < ROUNDS; r++) round();
const t1 = process.cpuUsage(t0);
console.log(((t1.user + t1.system) * 1000 / (ROUNDS * PER * N)).toFixed(1), 'ns per delivery', bytes > 0);
