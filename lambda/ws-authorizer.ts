// Placeholder entry so the CDK stack can point at it; the WebSocket path (issue 3, 2/4) replaces it.
export const handler = async (): Promise<never> => {
  throw new Error('ws-authorizer is not implemented yet (WebSocket path, issue 2/4)');
};
