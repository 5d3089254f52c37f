/**
 * jest's jsdom environment plus what every browser the client targets has and jsdom lacks: `fetch` with
 * streaming bodies (Node's, the same WHATWG API), its Request/Response/Headers, ReadableStream, TextDecoder,
 * and Node's AbortController (fetch only takes its own signals). jsdom's WebSocket, localStorage, document and
 * timers stay; modules resolve with the `browser` condition, as a bundler would for a page. Used by the React
 * tests (`@jest-environment ./test/support/jsdom-fetch-env.js`), which run the local stack in its own process.
 */
const { TestEnvironment } = require('jest-environment-jsdom');

const FROM_NODE = ['fetch', 'Request', 'Response', 'Headers', 'ReadableStream', 'TextDecoder', 'TextEncoder', 'AbortController', 'AbortSignal'];

class JsdomWithFetch extends TestEnvironment {
  constructor(config, context) {
    super(config, context);
    for (const name of FROM_NODE) this.global[name] = globalThis[name];
  }
}

module.exports = JsdomWithFetch;
