'use strict';
/**
 * Preloaded (`node --require bench/alloc-preload.js`) into a server by `npm run bench -- --alloc-prof DIR`:
 * V8's sampling heap profiler with the objects that garbage collection took included (what `--heap-prof`
 * leaves out: it keeps only what is still alive), so the profile says who allocates the garbage. Written to
 * BENCH_ALLOC_DIR when the process exits (SIGTERM included); summarise with `npx tsx bench/profile.ts FILE --alloc`.
 */
const { Session } = require('node:inspector');
const { writeFileSync } = require('node:fs');
const { join } = require('node:path');

const dir = process.env.BENCH_ALLOC_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  session.post('HeapProfiler.enable');
  session.post('HeapProfiler.startSampling', { samplingInterval: 32768, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  let written = false;
  const write = () => {
    if (written) return;
    written = true;
    session.post('HeapProfiler.stopSampling', (err, res) => {
      if (!err && res) writeFileSync(join(dir, `${process.pid}.heapprofile`), JSON.stringify(res.profile));
    });
  };
  process.on('exit', write);
  process.prependListener('SIGTERM', write);
}
