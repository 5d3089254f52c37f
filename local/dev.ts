import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { defaultProvider } from '@aws-sdk/credential-provider-node';
import pino from 'pino';
import { CORE_ENV } from '../contract/settings';
import { DEMO_NAMESPACES } from './demo/pages';
import { parseOrigin } from './guard';
import { LOCAL_USER_HEADER } from './http-api';
import { LOCAL_STACK_NAME, startLocalStack } from './stack';

const USAGE = `Usage: npm run dev -- [--port 3000] [--sse-port 3001] [--ws-port 3002] [--outputs-file PATH]
                      [--allow-origin ORIGIN]... [--ws-mode both|tasks|apigateway]
                      [--verify-signatures [--region REGION]]

Starts the local stack on 127.0.0.1: a private redis-server (unless REDIS_URL is set), the SSE
service (SSE, long poll, and WebSockets at /live: LiveUrl), the HTTP API stand-in that runs the
ticket and publish Lambda handlers, and the API Gateway WebSocket stand-in (with its management
API) that runs the WebSocket handlers (WebSocketUrl). Both WebSocket endpoints speak the same
protocol; --ws-mode (a stage's webSocket.mode, default both) picks which one a ticket's wsUrl names:
both and tasks: LiveUrl; apigateway: WebSocketUrl.

Browsers: only pages on the stack's own origins and on each --allow-origin (e.g.
--allow-origin http://localhost:5173, your app's dev server; repeat for more) may call it; other
pages get 403 origin_not_allowed. Requests with a Host other than 127.0.0.1, localhost or [::1]
get 403 (DNS rebinding). curl and other clients that send no Origin are not affected.

--verify-signatures: the IAM routes (/publish, /revoke, /backend/tickets) check SigV4 signatures as API
Gateway does, against your AWS credentials (the AWS SDK's chain: AWS_PROFILE, AWS_ACCESS_KEY_ID, SSO...)
and the region of --region (else AWS_REGION, else us-east-1): unsigned or wrongly signed calls get 403
{"message":...}. Without it those routes take any caller as the local backend.`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '3000' },
      'sse-port': { type: 'string', default: '3001' },
      'ws-port': { type: 'string', default: '3002' },
      'outputs-file': { type: 'string' },
      'allow-origin': { type: 'string', multiple: true },
      'ws-mode': { type: 'string', default: 'both' },
      'verify-signatures': { type: 'boolean' },
      region: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const port = Number(values.port);
  const ssePort = Number(values['sse-port']);
  const wsPort = Number(values['ws-port']);
  if (!Number.isInteger(port) || !Number.isInteger(ssePort) || !Number.isInteger(wsPort)) throw new Error(`--port, --sse-port and --ws-port take numbers.\n${USAGE}`);
  const mode = values['ws-mode'];
  if (mode !== 'both' && mode !== 'tasks' && mode !== 'apigateway') throw new Error(`--ws-mode takes both, tasks or apigateway.\n${USAGE}`);
  const logger = pino({ level: process.env[CORE_ENV.logLevel] ?? 'info' });
  const extra = (values['allow-origin'] ?? []).map(parseOrigin);
  const region = values.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1';
  let verifySignatures: { credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string }; region: string } | undefined;
  if (values['verify-signatures']) {
    try {
      const c = await defaultProvider()();
      verifySignatures = { credentials: { accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey, sessionToken: c.sessionToken }, region };
    } catch (err) {
      throw new Error(`--verify-signatures needs AWS credentials to verify against (the AWS SDK's chain found none: ${err instanceof Error ? err.message : String(err)}); set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY`);
    }
  }
  // The demo's namespaces (with `room`, presence on) unless the environment names its own.
  const env = process.env[CORE_ENV.namespacesJson] ? undefined : { [CORE_ENV.namespacesJson]: JSON.stringify(DEMO_NAMESPACES) };
  const stack = await startLocalStack({ apiPort: port, ssePort, wsPort, logger, allowedOrigins: extra, webSocketMode: mode, verifySignatures, backendEvents: {}, env });
  // Backend events reach the EventBridge stand-in; each is printed, as a rule's target would receive it.
  if (stack.eventBridge) stack.eventBridge.onEvent = (e) => console.log(`backend event ${e['detail-type']} ${JSON.stringify(e.detail)}`);
  const o = stack.outputs;
  if (values['outputs-file']) writeFileSync(values['outputs-file'], `${JSON.stringify({ [LOCAL_STACK_NAME]: o }, null, 2)}\n`);
  console.log(`
Realtime Blueprint local stack is up (Ctrl-C stops it).

  TicketUrl      ${o.TicketUrl}
  SseUrl         ${o.SseUrl}
  PollUrl        ${o.PollUrl}
  WebSocketUrl   ${o.WebSocketUrl}   (API Gateway stand-in; management API: ${stack.ws.managementEndpoint})
  LiveUrl        ${o.LiveUrl}   (WebSockets on the service; tickets' wsUrl: ${mode === 'apigateway' ? 'WebSocketUrl' : 'LiveUrl'}, --ws-mode ${mode})
  PublishUrl     ${o.PublishUrl}
  Demo page      ${new URL(o.TicketUrl).origin}/   (chat over WebSocket with who is in it, scoreboard over SSE, built client)
  RedisEndpoint  ${o.RedisEndpoint}${stack.redisServer ? ' (private redis-server)' : ''}
  EventBridge    ${stack.eventBridge?.url ?? 'off'}   (PutEvents stand-in: backend events are printed here)

Browser pages allowed: the stack's own origins${extra.length ? ` and ${extra.join(', ')}` : ' only (add yours with --allow-origin ORIGIN)'};
any other page gets 403 origin_not_allowed.
${values['outputs-file'] ? `\n  outputs written to ${values['outputs-file']}\n` : ''}
Act as a user with the local-only header "${LOCAL_USER_HEADER}: <sub>" (the JWT authorizer on AWS).
${verifySignatures ? `IAM routes (/publish, /revoke, /backend/tickets) verify SigV4 (service execute-api, region ${region}) against access key ${verifySignatures.credentials.accessKeyId.slice(0, 4)}…: sign with @realtime-blueprint/server.` : '/publish acts as an IAM-signed backend (unsigned calls are accepted; --verify-signatures checks them).'}

Round trip (two terminals; room:demo is the demo page's chat, with presence):
  T=$(curl -s -X POST ${o.TicketUrl} -H '${LOCAL_USER_HEADER}: alice' -H 'content-type: application/json' \\
        -d '{"channels":["room:demo"]}' | node -pe 'JSON.parse(require("fs").readFileSync(0)).ticket')
  curl -N "${o.SseUrl}?channels=room:demo&ticket=$T"

  curl -s -X POST ${o.PublishUrl} -H 'content-type: application/json' \\
        -d '{"channel":"room:demo","type":"message","data":{"from":"curl","text":"hello"}}'

WebSocket (a "ws" ticket; the ticket's channels are subscribed on connect). Node's own WebSocket: built in
from Node 22, behind --experimental-websocket on Node 20 and 21 (or: npx -y wscat -c "<url>?ticket=$T"):
  T=$(curl -s -X POST ${o.TicketUrl} -H '${LOCAL_USER_HEADER}: bob' -H 'content-type: application/json' \\
        -d '{"channels":["room:demo"],"transport":"ws"}' | node -pe 'JSON.parse(require("fs").readFileSync(0)).ticket')
  node ${wsFlag()}-e 'const ws = new WebSocket(process.argv[1]); ws.onmessage = (m) => console.log(String(m.data));
    ws.onopen = () => ws.send(JSON.stringify({ action: "publish", channel: "room:demo", type: "message", data: { from: "ws", text: "hi" } }))' \\
    "${mode === 'apigateway' ? o.WebSocketUrl : o.LiveUrl}?ticket=$T"
  (the ticket's wsUrl; the other WebSocket endpoint takes the same frames)
`);
  const stop = () => {
    stack.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

/** The flag Node needs for its global WebSocket: none from Node 22, `--experimental-websocket` on 20.10+ and 21. */
function wsFlag(): string {
  return Number(process.versions.node.split('.')[0]) >= 22 ? '' : '--experimental-websocket ';
}

main().catch((err) => {
  console.error(`npm run dev failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
