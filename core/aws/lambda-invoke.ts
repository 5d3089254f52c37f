import { Agent } from 'node:https';
import { Agent as HttpAgent } from 'node:http';
import type { HookInvoker } from '../hooks';
import { postText, signRestJsonPost, type CredentialProvider, serviceEndpoint } from './signer';

/**
 * The hooks' invoker on AWS: Lambda's `Invoke` (`POST /2015-03-31/functions/{FunctionName}/invocations`, the
 * `RequestResponse` invocation type, a JSON payload), SigV4-signed by our signer on a keep-alive socket, so the ticket
 * issuer, the message handler and the tasks call a hook without the SDK. A function error (`X-Amz-Function-Error`) or
 * any status but 200 rejects, and so does no answer within the hook's timeout: the hook's failure policy decides.
 */
export interface LambdaInvokerOptions {
  /** Where the credentials come from (the Lambda role, the task role). Required. */
  readonly credentials: CredentialProvider;
  readonly region: string;
  /** The Lambda endpoint. Defaults to {@link lambdaEndpoint} of the region. */
  readonly endpoint?: URL;
  /** The signing clock. Defaults to the system clock. */
  readonly now?: () => Date;
}

/** The endpoint the SDK would call for the region (`AWS_ENDPOINT_URL_LAMBDA`, `AWS_ENDPOINT_URL`, else the regional one). */
export function lambdaEndpoint(region: string, env: NodeJS.ProcessEnv = process.env): URL {
  return serviceEndpoint('lambda', 'AWS_ENDPOINT_URL_LAMBDA', region, env);
}

export class LambdaInvoker implements HookInvoker {
  private readonly endpoint: URL;
  private readonly agent: Agent | HttpAgent;

  constructor(private readonly options: LambdaInvokerOptions) {
    this.endpoint = options.endpoint ?? lambdaEndpoint(options.region);
    this.agent = this.endpoint.protocol === 'https:' ? new Agent({ keepAlive: true, maxSockets: 64 }) : new HttpAgent({ keepAlive: true, maxSockets: 64 });
  }

  async invoke(fn: string, payload: string, timeoutMs: number): Promise<unknown> {
    const base = this.endpoint.pathname.replace(/\/$/, '');
    const path = `${base}/2015-03-31/functions/${encodeURIComponent(fn)}/invocations`;
    const url = new URL(path, this.endpoint);
    const creds = await this.options.credentials();
    const headers = signRestJsonPost(url.host, path, payload, this.options.region, 'lambda', creds, (this.options.now ?? (() => new Date()))());
    const res = await postText(url, headers, payload, { agent: this.agent, timeoutMs, what: `Invoke ${fn}` });
    if (res.status !== 200) throw new Error(`Invoke ${fn} answered ${res.status} ${String(res.headers['x-amzn-errortype'] ?? '')}`.trim());
    if (res.headers['x-amz-function-error']) throw new Error(`${fn} failed (${String(res.headers['x-amz-function-error'])})`);
    return JSON.parse(res.text) as unknown;
  }

  /** Closes the keep-alive sockets. */
  destroy(): void {
    this.agent.destroy();
  }
}
