import type { CredentialProvider } from '../aws/signer';
import { jsonRequest, regionOfHost, signRequest } from '../../server-sdk/src/sigv4';
import type { ProbeSigner } from './clients';

/**
 * The canary's signer: the backend SDK's SigV4 (`@smithy/signature-v4`, service execute-api, what `npm run smoke`
 * signs with) over credentials from the runtime (on Lambda, the function role's from the environment). The region is
 * the host's (`*.execute-api.<region>.amazonaws.com`), else `region`.
 */
export function executeApiSigner(credentials: CredentialProvider, region: string | undefined): ProbeSigner {
  return (method, url, body) => {
    const r = regionOfHost(url.hostname) ?? region;
    if (!r) throw new Error(`cannot tell the region of ${url.host} for SigV4: set AWS_REGION`);
    return signRequest(jsonRequest(method, url, body), r, credentials);
  };
}
