import { json, type HttpEvent, type HttpResult } from './shared/http';

/**
 * PLACEHOLDER so that `cdk synth` finds the entry of the `POST /revoke` function (lib/publish-api.ts). The real handler
 * (revoke a user's tickets and sessions, close their WebSocket connections) is written in another branch and replaces
 * this file on merge. Until then the route refuses every call.
 */
export async function handler(_event: HttpEvent): Promise<HttpResult> {
  return json(501, { error: { code: 'not_implemented', message: 'POST /revoke is not implemented in this build.' } });
}
