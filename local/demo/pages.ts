import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { DEFAULT_NAMESPACES, type Namespaces } from '../../core/config';

/** The demo app's files (client/demo) and the client package's source (client/src). */
const DEMO_DIR = join(__dirname, '../../client/demo');
const CLIENT_ENTRY = join(__dirname, '../../client/src/index.ts');

/**
 * The namespaces of `npm run dev` (unless NAMESPACES_JSON is set): the runtime's, and `room`, chat rooms with presence on
 * (`chat`'s policy and `"presence": "members"`), where the demo's chat is (`room:demo`), so it shows who is in it. The
 * runtime's own namespaces keep presence `off` (its default), so `chat:` channels carry no presence events.
 */
export const DEMO_NAMESPACES: Namespaces = { ...DEFAULT_NAMESPACES, room: { ...DEFAULT_NAMESPACES.chat, presence: 'members' } };

/**
 * The demo page of `npm run dev`, served at the local HTTP API's root: `/` (the page),
 * `/demo/app.js` (the app) and `/demo/client.js` (the client package built by esbuild with the same
 * settings as client/build.mjs, once, on first request). Same origin as `/tickets` and `/publish`,
 * so the local guard lets it in. Returns false for any other request.
 */
export function demoPages(): (req: IncomingMessage, res: ServerResponse) => boolean {
  let client: string | undefined;
  const files: Record<string, () => [string, string]> = {
    '/': () => ['text/html; charset=utf-8', readFileSync(join(DEMO_DIR, 'index.html'), 'utf8')],
    '/demo/app.js': () => ['text/javascript; charset=utf-8', readFileSync(join(DEMO_DIR, 'app.js'), 'utf8')],
    '/demo/client.js': () => ['text/javascript; charset=utf-8', (client ??= buildClient())],
  };
  return (req, res) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const file = req.method === 'GET' ? files[path] : undefined;
    if (!file) return false;
    const [type, body] = file();
    res.writeHead(200, { 'content-type': type, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
    res.end(body);
    return true;
  };
}

function buildClient(): string {
  // esbuild is a dev dependency: required only when the demo is asked for.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { buildSync } = require('esbuild') as typeof import('esbuild');
  const out = buildSync({ entryPoints: [CLIENT_ENTRY], bundle: true, format: 'esm', platform: 'neutral', target: 'es2020', minify: true, write: false });
  return out.outputFiles[0].text;
}
