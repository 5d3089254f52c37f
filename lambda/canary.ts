import { environmentCredentials } from '../core/aws/signer';
import { executeApiSigner } from '../core/probe/signer';
import { canaryConfigFromEnv, createCanaryHandler } from './handlers/canary';

/** The Lambda entry of the canary (EventBridge Scheduler, every minute): configured from the environment at cold start, signed with the function role. */
export const handler = createCanaryHandler({ config: canaryConfigFromEnv(process.env), sign: executeApiSigner(environmentCredentials(), process.env.AWS_REGION) });
