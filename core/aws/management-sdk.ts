import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { ApiGatewayManagementApiClient, DeleteConnectionCommand, PostToConnectionCommand } from '@aws-sdk/client-apigatewaymanagementapi';
import type { ManagementApi } from '../fanout';
import { isLoopbackEndpoint, LOCAL_CREDENTIALS, managementRegion, type ManagementClientOptions } from './management-client';

/**
 * The AWS SDK's management API client, for tests and benchmarks that compare it with the lean poster or drive the
 * local gateway as AWS's own client would. The Lambda bundles do not import this module (they post with
 * `createManagementPoster`), so the SDK stays out of them (`scripts/bundle-budgets.ts`).
 */

/**
 * An `ApiGatewayManagementApiClient` for a stage's callback URL that also answers the fan-out's {@link ManagementApi}
 * (`postToConnection`, `deleteConnection` through its commands). The SDK's own retries are off (`maxAttempts: 1`): the
 * fan-out retries with its own budget and counts them. A loopback endpoint (the local gateway) gets dummy static
 * credentials.
 */
export function createManagementClient(endpoint: string, options: ManagementClientOptions = {}): ApiGatewayManagementApiClient & ManagementApi {
  const maxSockets = options.maxSockets ?? 64;
  const client = new ApiGatewayManagementApiClient({
    endpoint,
    region: managementRegion(endpoint, options),
    maxAttempts: 1,
    ...(isLoopbackEndpoint(endpoint) ? { credentials: { ...LOCAL_CREDENTIALS } } : {}),
    requestHandler: {
      httpAgent: new HttpAgent({ keepAlive: true, maxSockets }),
      httpsAgent: new HttpsAgent({ keepAlive: true, maxSockets }),
      requestTimeout: options.requestTimeoutMs ?? 5000,
    },
  });
  return Object.assign(client, {
    postToConnection: async (connectionId: string, data: Uint8Array) => {
      await client.send(new PostToConnectionCommand({ ConnectionId: connectionId, Data: data }));
    },
    deleteConnection: async (connectionId: string) => {
      await client.send(new DeleteConnectionCommand({ ConnectionId: connectionId }));
    },
  });
}
