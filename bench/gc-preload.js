'use strict';
/**
 * Preloaded (`node --expose-gc --require bench/gc-preload.js`) into a server by `npm run bench -- --gc`:
 * on SIGUSR2 it runs full garbage collections, so the bench reads RSS after a full GC; with
 * BENCH_HEAP_DIR set it then writes a heap snapshot there (`--heap-snapshot`), named by the signal's
 * ordinal (1: before the connections, 2: with them open). With BENCH_MEM_FILE set it writes
 * `process.memoryUsage()` after the collections there (`--capacity`: the heap delta per connection).
 */
const { writeHeapSnapshot } = require('node:v8');
const { join } = require('node:path');
const { writeFileSync } = require('node:fs');

let n = 0;
process.on('SIGUSR2', () => {
  if (typeof global.gc !== 'function') return;
  global.gc();
  global.gc();
  n++;
  if (process.env.BENCH_MEM_FILE) writeFileSync(process.env.BENCH_MEM_FILE, JSON.stringify({ n, ...process.memoryUsage() }));
  const dir = process.env.BENCH_HEAP_DIR;
  if (dir) writeHeapSnapshot(join(dir, `${process.pid}-${n}.heapsnapshot`));
});
