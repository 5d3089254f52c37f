/**
 * The size budget of each Lambda bundle (minified bytes of `dist/lambda/<name>/index.js`), in one table read by
 * `npm run bundles` (`scripts/bundle-report.ts`) and by the test that fails when a bundle passes its budget
 * (`test/infra/bundle-budgets.test.ts`).
 *
 * - The ticket issuer and the `$connect` authorizer are on every connection's path (a cold one is felt by the user):
 *   250 KB. What keeps them under it is what they do not import: esbuild keeps a Lua script whose source is a template
 *   literal with a substitution (`${CHANNEL_STATE}…`) in every bundle that imports its module, used or not (it treats the
 *   substitution as a possible side effect, even of a `const` string), so the ticket path imports no module of such
 *   scripts: issuing lives in `core/ticket-issue.ts` (not beside redemption's channel positions, which are the channel
 *   broker's), the revocation check in `core/revocation-epoch.ts` (not beside `revokeUser` and the connection registry),
 *   the ticket's Lua in `core/redis/ticket-scripts.ts`. Measured (`npm run bundles`): the ticket issuer 248.8 KB before,
 *   237.9 KB after, with presence `info` added; the authorizer 247.2 KB before, 244.3 KB after.
 * - `$connect` and `$disconnect` only touch Redis: 250 KB, like the ticket path, plus 12 KB since they join and leave
 *   presence (issue 24: the presence scripts of `core/redis/presence.ts`, about 10 KB, and the channel broker's append
 *   step they share): 262 KB.
 * - The handlers that post to connections (publish, ws-message, the fan-out worker), revoke and the fan-out dead-letter
 *   consumer (DeleteConnection): the
 *   issue allowed them 700 KB with the SDK's management API client; they sign their calls themselves now (about 250 KB),
 *   so 350 KB keeps room to grow and still fails if the SDK (about 460 KB) or full zod (about 430 KB more than zod/mini) comes back.
 * - The canary runs once a minute off the users' path; it signs with `@smithy/signature-v4` (what `npm run smoke` signs
 *   with, about 144 KB) and carries `ws`: about 252 KB. 350 KB still fails if the SDK's credential chain (about 209 KB)
 *   comes in.
 */
export const KB = 1000;

export const LAMBDA_BUNDLE_BUDGETS: Readonly<Record<string, number>> = {
  'ticket-issuer': 250 * KB,
  'ws-authorizer': 250 * KB,
  'ws-connect': 262 * KB,
  'ws-disconnect': 262 * KB,
  revoke: 350 * KB,
  // Reads Redis only, like the ticket issuer.
  history: 250 * KB,
  publish: 350 * KB,
  'ws-message': 350 * KB,
  'fanout-worker': 350 * KB,
  'fanout-dead-letters': 350 * KB,
  canary: 350 * KB,
};
