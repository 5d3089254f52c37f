/**
 * The esbuild settings of every bundle the blueprint ships, in one dependency-free module, read by all three builds.
 * It lives in `contract/` (what infrastructure and runtime agree on, importing nothing) because both `lib/` and
 * `scripts/` read it: in `scripts/` it made `lib/` import `scripts/`, whose `cost.ts` imports `cost/`, which imports `lib/`.
 *
 * - `npm run build` (`scripts/build.ts`): the Lambda bundles and the SSE service into `dist/`;
 * - the CDK bundling wrapper (`lib/realtime-function.ts`), which maps them onto `NodejsFunction` bundling options;
 * - the SSE image (`service/Dockerfile`), which runs `npm run build -- service`, and takes its Node.js base image from
 *   {@link NODE_MAJOR} (a test reads the Dockerfile and checks both).
 *
 * It imports nothing, so the Docker build stage and `lib/` can load it without pulling anything else in.
 */

/** Node.js major version of every runtime: the Lambda runtime (`nodejs24.x`) and the SSE image (`node:24`). */
export const NODE_MAJOR = 24;

/** Settings shared by every bundle (esbuild `BuildOptions` names). */
export const ESBUILD_OPTIONS = {
  bundle: true,
  platform: 'node',
  /** The runtime's own Node.js: no down-levelling of syntax it already runs. */
  target: `node${NODE_MAJOR}`,
  /** CommonJS: what the Lambda `index.handler` loader and `node dist/service/main.js` both take without a package.json. */
  format: 'cjs',
  minify: true,
  /** A linked `.map` next to each bundle; `node --enable-source-maps` applies it to stack traces (the Lambdas'; not the service's). */
  sourcemap: true,
  /** The map carries positions, not a second copy of the sources. */
  sourcesContent: false,
  legalComments: 'none',
  /**
   * Nothing is left to the runtime: the AWS SDK v3 clients are bundled (pinned by package-lock, tree-shaken) rather
   * than taken from the Lambda runtime's copy, so the deployed code runs exactly the versions the tests ran.
   */
  external: [] as readonly string[],
} as const;

/**
 * The SSE service's bundle: the shared settings, not minified. A long-lived task is not size-bound the way a Lambda
 * package is (no cold start per request), and readable code in `docker exec` sessions and heap snapshots is worth more.
 */
export const SERVICE_ESBUILD_OPTIONS = { ...ESBUILD_OPTIONS, minify: false } as const;

/** Entry and output of the SSE service bundle (the Dockerfile copies `dist/service` and runs `main.js`). */
export const SERVICE_BUNDLE = { entry: 'service/main.ts', outfile: 'dist/service/main.js' } as const;

/**
 * V8 flags of the SSE service's process: the image's `CMD` (service/Dockerfile, service/Dockerfile.prebuilt; a test
 * checks both) and `npm run bench`'s `ours`, so the bench measures the process as deployed.
 *
 * `--max-semi-space-size=16` (MiB): the young generation, where each connect's short-lived objects are born and die.
 * Left to Node (20 and later), its size follows the memory limit: a 512 MiB task (the default size) gets 1 MiB of
 * semi-space, so it scavenges about 16 times as often as the 16 MiB a large machine gets, and each scavenge copies the
 * young connections' live objects again. 16 MiB is what every benchmark in docs/BENCHMARKS.md ran with (the bench
 * machine's default), and what Node used on every 64-bit machine before 20; it costs at most 3 × 16 MiB of the task's
 * memory (two semi-spaces and the young large-object space), taken only while allocation is heavy. Reconnect storm,
 * same run: docs/BENCHMARKS.md, "The young generation".
 *
 * No `--enable-source-maps` (the Lambdas keep it, lib/realtime-function.ts): Node formats the stack of every socket
 * error (a write into a reset stream reads `err.stack`), and with source maps on that formatting looks each frame up in
 * the maps. A reconnect storm's drop resets every stream: 127.5 µs of server CPU per dropped stream with the flag, 67.5
 * without, same run (docs/BENCHMARKS.md, "Source maps and the connect path"). The service bundle is not minified, so a
 * stack without them still names every function; its `.map` ships next to it for reading a logged position offline.
 */
export const SERVICE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=16'];
