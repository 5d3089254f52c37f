'use strict';
/**
 * Loopback kernel cost per write() by write size (docs/BENCHMARKS.md, "Per write, syscall by syscall"): this process
 * writes one buffer to each of 2,000 sockets per 5-ms round (a fan-out burst), a child process reads them all; five
 * interleaved passes of 150 rounds per size. Prints the writer's system µs per write, per size.
 * `node bench/loopback-write-size.js [SIZES]` (default 270,540,700,1400 bytes).
 */
const net = require('node:net');
const { spawn } = require('node:child_process');
if (process.argv[2] === 'reader') {
  const [port, n] = [Number(process.argv[3]), Number(process.argv[4])];
  let open = 0;
  for (let i = 0; i < n; i++) {
    const s = net.connect(port, '127.0.0.1', () => { if (++open === n) process.send('ready'); });
    s.on('data', () => undefined);
    s.on('error', () => undefined);
  }
  process.on('disconnect', () => process.exit(0));
  return;
}
const N = 2000, ROUNDS = 150;
const socks = [];
const server = net.createServer((s) => { s.setNoDelay(true); s.resume(); socks.push(s); });
server.listen(0, '127.0.0.1', () => {
  const reader = spawn(process.execPath, [__filename, 'reader', server.address().port, N], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  reader.on('message', async () => {
    while (socks.length < N) await new Promise((r) => setTimeout(r, 20));
    const sizes = (process.argv[2] || '270,540,700,1400').split(',').map(Number);
    const res = Object.fromEntries(sizes.map((z) => [z, []]));
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    for (let rep = 0; rep < 5; rep++) {
      for (const z of sizes) {
        const buf = Buffer.alloc(z, 0x61);
        const c0 = process.cpuUsage();
        for (let r = 0; r < ROUNDS; r++) {
          for (let i = 0; i < N; i++) socks[i].write(buf);
          await sleep(5);
        }
        const c = process.cpuUsage(c0);
        res[z].push(c.system / (ROUNDS * N));
      }
    }
    for (const z of sizes) {
      const v = res[z].sort((a, b) => a - b);
      console.log(`${z} B: system µs per write, median ${v[2].toFixed(2)} (min ${v[0].toFixed(2)}, max ${v[4].toFixed(2)})`);
    }
    reader.disconnect();
    reader.kill();
    process.exit(0);
  });
});
