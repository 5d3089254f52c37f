import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { defaultProvider } from '@aws-sdk/credential-provider-node';
import { gapsByPrev } from '../core/probe/canary';
import { postPublish, postTicket, request, SseReader, WsClient, type JsonAnswer, type ProbeAuth, type SseEvent } from '../core/probe/clients';
import { jsonRequest, regionOfHost, signRequest } from '../server-sdk/src/sigv4';

/**
 * `npm run smoke -- --outputs-file outputs.json`: the wire contract of README.md checked against a deployed stack (the
 * file `cdk deploy --outputs-file` writes) or the local stack (`npm run dev -- --outputs-file`). One line per check
 * (PASS, FAIL or SKIP with what was seen), a summary line, and the exit code a pipeline gates on: 0 all passed, 1 a
 * check failed, 2 the tool could not start (usage, outputs file, no way to get a ticket).
 *
 * Tickets: a JWT in `SMOKE_JWT` (the ticket API's JWT authorizer), or `--iam-user SUB` (the AWS credentials of the
 * environment sign the call, SigV4, as a trusted backend naming SUB; the caller must be in the stage's
 * `trustedPrincipals`), or `--local-user SUB` (the local stack's `x-local-user` header: refused unless every endpoint is
 * on loopback).
 */

const USAGE = `Usage: npm run smoke -- --outputs-file PATH [--stack NAME] [--channel NS:NAME]
                        [--local-user SUB | --iam-user SUB] [--ticket-url URL] [--region REGION]
                        [--sign-publish] [--timeout-ms 10000]

How the smoke test gets tickets, first that applies:
  --local-user SUB   the local stack (npm run dev) only: acts as SUB with its x-local-user header
  SMOKE_JWT=<jwt>    Authorization: Bearer <jwt> (a ticket API with JWT auth)
  --iam-user SUB     SigV4-signed with the AWS credentials of the environment, naming SUB (a trusted principal;
                     with JWT auth pass --ticket-url <TicketUrl with /backend/tickets>)
The publish API check is SigV4-signed (--iam-user, or --sign-publish), unsigned with --local-user alone (a local
stack without --verify-signatures), else skipped.
Exit code: 0 every check passed, 1 a check failed, 2 the smoke test could not run.`;

/** A reason the tool cannot run at all (exit code 2). */
export class SmokeUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SmokeUsageError';
  }
}

/** The stack outputs the checks read (names of `OUTPUT_NAMES` in lib/realtime-stack.ts). */
export interface SmokeEndpoints {
  readonly TicketUrl: string;
  readonly SseUrl: string;
  readonly PollUrl: string;
  /** The API Gateway WebSocket endpoint (`webSocket.mode` apigateway or both). */
  readonly WebSocketUrl?: string;
  /** The tasks' WebSocket endpoint, `/live` (`webSocket.mode` tasks or both). */
  readonly LiveUrl?: string;
  readonly PublishUrl: string;
}
const ENDPOINT_NAMES = ['TicketUrl', 'SseUrl', 'PollUrl', 'PublishUrl'] as const;
/** At least one of these exists, as the stage's `webSocket.mode` says. */
const WS_ENDPOINT_NAMES = ['WebSocketUrl', 'LiveUrl'] as const;

/** How the smoke test authenticates. */
export type SmokeAuth = ProbeAuth;

export interface SmokeOptions {
  readonly endpoints: SmokeEndpoints;
  readonly auth: SmokeAuth;
  /** Channel used by every check; needs a namespace any ticket holder may subscribe and publish to. Defaults to `chat:smoke-<random>`. */
  readonly channel?: string;
  /** Where tickets are minted. Defaults to `TicketUrl`. */
  readonly ticketUrl?: string;
  /** Sign the publish API call with the environment's AWS credentials even with JWT or local tickets (a local stack that verifies signatures). Defaults to false. */
  readonly signPublish?: boolean;
  /** Region for SigV4 when the host does not name it (custom domains). Defaults to the host's, then AWS_REGION. */
  readonly region?: string;
  /** Longest wait for one answer or event, in milliseconds. Defaults to 10000. */
  readonly timeoutMs?: number;
}

export type SmokeStatus = 'PASS' | 'FAIL' | 'SKIP';
export interface SmokeResult {
  readonly check: string;
  readonly status: SmokeStatus;
  readonly detail: string;
  readonly ms: number;
}

/** Reads the endpoints from a `cdk deploy --outputs-file` file. Output keys may carry a construct prefix and hash suffix. */
export function readOutputs(file: string, stackName?: string): SmokeEndpoints {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new SmokeUsageError(`cannot read outputs file ${file}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (typeof parsed !== 'object' || parsed === null) throw new SmokeUsageError(`${file} is not a cdk outputs file ({"<stack>": {"TicketUrl": ...}})`);
  const stacks = Object.entries(parsed as Record<string, Record<string, string>>).filter(([, o]) => typeof o === 'object' && o !== null && Object.keys(o).some((k) => /TicketUrl/.test(k)));
  const chosen = stackName ? stacks.filter(([name]) => name === stackName) : stacks;
  if (chosen.length !== 1) {
    const names = stacks.map(([n]) => n).join(', ') || '(none)';
    throw new SmokeUsageError(stackName ? `stack "${stackName}" has no realtime outputs in ${file} (stacks with them: ${names})` : `${file} has ${chosen.length} stacks with realtime outputs (${names}); pass --stack NAME`);
  }
  const outputs = chosen[0][1];
  const found: Record<string, string> = {};
  const keysOf = (name: string) => Object.keys(outputs).filter((k) => k === name || new RegExp(`^[A-Za-z0-9]*${name}[0-9A-F]{8}$`).test(k));
  for (const name of ENDPOINT_NAMES) {
    const keys = keysOf(name);
    if (keys.length !== 1) throw new SmokeUsageError(`${file}: expected one output named ${name}, found ${keys.length} (${keys.join(', ') || 'none'})`);
    found[name] = outputs[keys[0]];
  }
  for (const name of WS_ENDPOINT_NAMES) {
    const keys = keysOf(name);
    if (keys.length > 1) throw new SmokeUsageError(`${file}: expected at most one output named ${name}, found ${keys.join(', ')}`);
    if (keys.length === 1) found[name] = outputs[keys[0]];
  }
  if (!WS_ENDPOINT_NAMES.some((n) => found[n])) throw new SmokeUsageError(`${file}: no WebSocket endpoint (an output named WebSocketUrl or LiveUrl)`);
  return found as unknown as SmokeEndpoints;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

/** Whether every endpoint is on loopback (the only place `--local-user` may be sent). */
export function allLoopback(endpoints: SmokeEndpoints): boolean {
  const urls = [...ENDPOINT_NAMES.map((n) => endpoints[n]), ...WS_ENDPOINT_NAMES.map((n) => endpoints[n]).filter((u): u is string => !!u)];
  return urls.every((u) => LOOPBACK.has(new URL(u).hostname));
}

// ---------------------------------------------------------------------------------------------------------------
// SigV4 (service execute-api): the backend SDK's signer (server-sdk/src/sigv4.ts, @smithy/signature-v4) with credentials
// from the AWS SDK's default provider chain.

function regionOf(url: URL, fallback?: string): string {
  const region = regionOfHost(url.hostname) ?? fallback ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION;
  if (!region) throw new SmokeUsageError(`cannot tell the region of ${url.host} for SigV4: pass --region or set AWS_REGION`);
  return region;
}

export async function signedHeaders(method: string, url: URL, body: string, region?: string): Promise<Record<string, string>> {
  return signRequest(jsonRequest(method, url, body), regionOf(url, region), defaultProvider());
}

// ---------------------------------------------------------------------------------------------------------------
// The checks.

const isErrorBody = (b: unknown, code?: string): boolean => {
  const e = (b as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
  return typeof e?.code === 'string' && typeof e.message === 'string' && (code === undefined || e.code === code);
};
const show = (a: JsonAnswer) => `HTTP ${a.status} ${a.text.slice(0, 160)}`;

/** Runs every check in order; `report` is called with each result as it is known. Never throws for a failed check. */
export async function runSmoke(options: SmokeOptions, report: (r: SmokeResult) => void = () => undefined): Promise<SmokeResult[]> {
  const e = options.endpoints;
  const auth = options.auth;
  const timeout = options.timeoutMs ?? 10_000;
  const channel = options.channel ?? `chat:smoke-${randomBytes(6).toString('hex')}`;
  const ticketUrl = options.ticketUrl ?? e.TicketUrl;
  if (auth.kind === 'local' && !allLoopback(e)) {
    throw new SmokeUsageError('--local-user only works against the local stack (every endpoint on 127.0.0.1, localhost or [::1]); on AWS use SMOKE_JWT or --iam-user');
  }
  const results: SmokeResult[] = [];
  const state: { firstId?: string; secondId?: string; lastEventId?: string; spentUrl?: string; stream?: SseReader; ws?: WsClient } = {};
  /** The envelope id of an SSE event (its `id:` line is the connection's cursor, opaque). */
  const envelopeId = (ev: SseEvent): string | undefined => {
    try {
      return (JSON.parse(ev.data) as { id?: string }).id;
    } catch {
      return undefined;
    }
  };

  async function check(name: string, fn: () => Promise<string | { skip: string }>): Promise<void> {
    const started = Date.now();
    let result: SmokeResult;
    try {
      const out = await fn();
      result = typeof out === 'string' ? { check: name, status: 'PASS', detail: out, ms: Date.now() - started } : { check: name, status: 'SKIP', detail: out.skip, ms: 0 };
    } catch (err) {
      result = { check: name, status: 'FAIL', detail: err instanceof Error ? err.message : String(err), ms: Date.now() - started };
    }
    results.push(result);
    report(result);
  }
  const need = (ok: unknown, message: string) => {
    if (!ok) throw new Error(message);
  };

  const sign = (method: string, url: URL, body: string) => signedHeaders(method, url, body, options.region);
  async function ticket(transport: 'sse' | 'ws', body: string = JSON.stringify({ channels: [channel], transport })): Promise<JsonAnswer> {
    return postTicket(ticketUrl, auth, body, sign, timeout);
  }
  async function mint(transport: 'sse' | 'ws'): Promise<{ ticket: string; url: string }> {
    const r = await ticket(transport);
    need(r.status === 201 && typeof r.body?.ticket === 'string', `POST ${ticketUrl} for a ${transport} ticket: ${show(r)}`);
    return { ticket: r.body.ticket, url: transport === 'sse' ? r.body.sseUrl : r.body.wsUrl };
  }

  try {
    await check('ticket', async () => {
      const r = await ticket('sse');
      need(r.status === 201, `POST ${ticketUrl}: expected 201, got ${show(r)}`);
      need(typeof r.body?.ticket === 'string' && typeof r.body.expiresAt === 'string', `no ticket/expiresAt in ${r.text}`);
      need(typeof r.body.sseUrl === 'string' && r.body.sseUrl.startsWith(`${e.SseUrl}?`), `sseUrl ${r.body.sseUrl} does not start with the SseUrl output ${e.SseUrl}`);
      need(r.body.wsUrl === null, `wsUrl should be null for an SSE ticket, got ${r.body.wsUrl}`);
      state.spentUrl = r.body.sseUrl;
      return `201, single-use SSE ticket for ${channel}, expires ${r.body.expiresAt}`;
    });

    await check('stream', async () => {
      need(state.spentUrl, 'no ticket (the ticket check failed)');
      const stream = new SseReader(state.spentUrl!, {});
      state.stream = stream;
      const ready = await stream.waitFor((ev) => ev.event === 'ready', 'event: ready', timeout);
      need(stream.contentType.startsWith('text/event-stream'), `content-type ${stream.contentType}`);
      return `200 text/event-stream, "ready" (${ready.data.slice(0, 60)})`;
    });

    await check('ticket single use', async () => {
      need(state.spentUrl, 'no ticket (the ticket check failed)');
      const r = await request(state.spentUrl!, {}, timeout);
      need(r.status === 401 && isErrorBody(r.body, 'ticket_invalid'), `the spent ticket again: expected 401 ticket_invalid, got ${show(r)}`);
      return '401 ticket_invalid for the spent ticket';
    });

    await check('ws subscribe', async () => {
      const t = await mint('ws');
      const wsEndpoints = [e.LiveUrl, e.WebSocketUrl].filter((u): u is string => !!u);
      need(wsEndpoints.some((u) => t.url?.startsWith(`${u}?ticket=`)), `wsUrl ${t.url} does not start with the LiveUrl or WebSocketUrl output (${wsEndpoints.join(', ')})`);
      const ws = await WsClient.open(t.url, timeout);
      state.ws = ws;
      ws.send({ action: 'subscribe', channel });
      const f = await ws.waitFor((m) => m.type === 'subscribed' && m.channel === channel, `subscribed ${channel}`, timeout);
      return `connected with a ws ticket, subscribed ${channel} at cursor ${f.cursor}`;
    });

    await check('ws ping', async () => {
      need(state.ws, 'no connection (ws subscribe failed)');
      const from = state.ws!.frames.length;
      state.ws!.send({ action: 'ping' });
      await state.ws!.waitFor((m) => m.type === 'pong', 'pong', timeout, from);
      return 'pong';
    });

    await check('ws publish', async () => {
      need(state.ws, 'no connection (ws subscribe failed)');
      const ws = state.ws!;
      const from = ws.frames.length;
      ws.send({ action: 'publish', channel, type: 'smoke', data: { n: 1 } });
      const ack = await ws.waitFor((m) => m.type === 'published' || m.type === 'error', 'published', timeout, from);
      need(ack.type === 'published', `publish refused: ${JSON.stringify(ack)}`);
      state.firstId = ack.id;
      await ws.waitFor((m) => m.id === ack.id && m.channel === channel && m.type === 'smoke', `envelope ${ack.id} on the WebSocket`, timeout, from);
      need(state.stream, 'published, but no SSE stream to receive it (stream failed)');
      // What a browser's EventSource would send back on its own reconnect: the `id:` line, as it came.
      state.lastEventId = (await state.stream!.waitFor((ev) => ev.event === 'smoke' && envelopeId(ev) === ack.id, `event ${ack.id} on the SSE stream`, timeout)).id;
      return `published id ${ack.id}; delivered to the WebSocket and to the SSE stream`;
    });

    await check('resume with Last-Event-ID', async () => {
      need(state.ws && state.firstId, 'no first event (ws publish failed)');
      state.stream?.close();
      const from = state.ws!.frames.length;
      state.ws!.send({ action: 'publish', channel, type: 'smoke', data: { n: 2 } });
      const ack = await state.ws!.waitFor((m) => m.type === 'published' || m.type === 'error', 'published', timeout, from);
      need(ack.type === 'published', `second publish refused: ${JSON.stringify(ack)}`);
      state.secondId = ack.id;
      const t = await mint('sse');
      const last = state.lastEventId ?? state.firstId!;
      const stream = new SseReader(t.url, { 'last-event-id': last });
      try {
        await stream.waitFor((ev) => ev.event === 'ready', 'event: ready', timeout);
        const ids = stream.events.filter((ev) => ev.event === 'smoke').map(envelopeId);
        need(ids.includes(ack.id) && !ids.includes(state.firstId), `replay after ${last}: expected ${ack.id} before "ready" and not ${state.firstId}, got [${ids.join(', ')}]`);
      } finally {
        stream.close();
      }
      return `Last-Event-ID ${last} (the id line of ${state.firstId}): replayed ${ack.id} before "ready", nothing twice`;
    });

    await check('poll', async () => {
      need(state.firstId && state.secondId, 'no events to poll (the publish checks failed)');
      const t = await mint('sse');
      const url = `${e.PollUrl}?channels=${encodeURIComponent(channel)}&cursor=${state.firstId}&ticket=${t.ticket}`;
      const r = await request(url, {}, timeout);
      need(r.status === 200 && Array.isArray(r.body?.events), `GET /poll: expected 200 {"events"}, got ${show(r)}`);
      const ids = (r.body.events as { id: string }[]).map((ev) => ev.id);
      need(ids.includes(state.secondId!) && !ids.includes(state.firstId!), `poll from cursor ${state.firstId}: expected ${state.secondId}, got [${ids.join(', ')}]`);
      // The answer's cursor goes back as it came (opaque): the next poll, without waiting, has nothing again.
      need(typeof r.body.cursor === 'string', `GET /poll: no cursor in ${r.text}`);
      const t2 = await mint('sse');
      const again = await request(`${e.PollUrl}?channels=${encodeURIComponent(channel)}&cursor=${encodeURIComponent(r.body.cursor)}&ticket=${t2.ticket}&wait=0`, {}, timeout);
      need(again.status === 200 && Array.isArray(again.body?.events), `GET /poll with the answer's cursor: expected 200 {"events"}, got ${show(again)}`);
      const twice = (again.body.events as { id: string }[]).map((ev) => ev.id).filter((id) => ids.includes(id));
      need(twice.length === 0, `GET /poll with the answer's cursor ${r.body.cursor}: delivered again [${twice.join(', ')}]`);
      return `200, events after cursor ${state.firstId}: [${ids.join(', ')}]; its cursor ${r.body.cursor} polled again: nothing twice`;
    });

    await check('publish api', async () => {
      const signed = auth.kind === 'iam' || !!options.signPublish;
      if (auth.kind !== 'local' && !signed) return { skip: 'POST /publish needs SigV4: pass --iam-user, or --sign-publish with AWS credentials of a trusted principal' };
      need(state.ws, 'no WebSocket to receive it (ws subscribe failed)');
      const from = state.ws!.frames.length;
      const r = await postPublish(e.PublishUrl, { channel, type: 'smoke', data: { n: 3 } }, signed ? sign : undefined, timeout);
      need(r.status === 202 && typeof r.body?.id === 'string', `POST ${e.PublishUrl}: expected 202 {"id"}, got ${show(r)}`);
      await state.ws!.waitFor((m) => m.id === r.body.id, `envelope ${r.body.id} on the WebSocket`, timeout, from);
      return `202 id ${r.body.id}, delivered to the WebSocket`;
    });

    await check('gaps by prev', async () => {
      need(state.ws, 'no WebSocket (ws subscribe failed)');
      const got = state.ws!.frames.filter((m) => m.channel === channel && m.type === 'smoke');
      need(got.length >= 2, `fewer than two events on the WebSocket: ${got.length}`);
      need(
        got.every((m) => typeof m.prev === 'string'),
        `an envelope without prev: ${JSON.stringify(got.find((m) => typeof m.prev !== 'string'))}`,
      );
      // Between the events the WebSocket received: each names the one before it.
      const gaps = gapsByPrev(got, undefined);
      need(gaps === 0, `${gaps} gap(s) by prev in [${got.map((m) => `${m.prev}→${m.id}`).join(', ')}]`);
      return `${got.length} events on the WebSocket, each naming the one before it: 0 gaps`;
    });

    await check('bad input: JSON errors', async () => {
      const answers: [string, JsonAnswer, number, string][] = [
        ['POST /tickets with malformed JSON', await ticket('sse', '{"channels":'), 400, 'invalid_json'],
        ['POST /tickets with an invalid channel', await ticket('sse', JSON.stringify({ channels: ['Bad Name'] })), 400, 'invalid_channel'],
        ['GET /events with an invalid channel', await request(`${e.SseUrl}?channels=${encodeURIComponent('Bad Name')}`, {}, timeout), 400, 'invalid_channel'],
        ['GET /poll with an invalid channel', await request(`${e.PollUrl}?channels=${encodeURIComponent('Bad Name')}&cursor=0`, {}, timeout), 400, 'invalid_channel'],
        ['GET /events without a ticket', await request(`${e.SseUrl}?channels=${encodeURIComponent(channel)}`, {}, timeout), 401, 'unauthorized'],
      ];
      for (const [what, a, status, code] of answers) need(a.status === status && isErrorBody(a.body, code), `${what}: expected ${status} ${code}, got ${show(a)}`);
      if (state.ws) {
        const from = state.ws.frames.length;
        state.ws.send({ action: 'subscribe', channel: 'Bad Name' });
        const f = await state.ws.waitFor((m) => m.type === 'error', 'an error frame', timeout, from);
        need(typeof f.code === 'string' || typeof f.error === 'object', `error frame without a code: ${JSON.stringify(f)}`);
      }
      return `${answers.map(([, , s, c]) => `${s} ${c}`).join(', ')}${state.ws ? ', WebSocket error frame' : ''}`;
    });
  } finally {
    state.stream?.close();
    state.ws?.close();
  }
  return results;
}

/** One line per result, aligned: `PASS  ticket  201, ... (12 ms)`. */
export function formatResult(r: SmokeResult): string {
  return `${r.status}  ${r.check.padEnd(26)} ${r.detail}${r.status === 'SKIP' ? '' : ` (${r.ms} ms)`}`;
}

/** The summary line and the exit code for a run. */
export function summarise(results: readonly SmokeResult[]): { line: string; exitCode: number } {
  const count = (s: SmokeStatus) => results.filter((r) => r.status === s).length;
  const failed = count('FAIL');
  return { line: `smoke: ${count('PASS')} passed, ${failed} failed, ${count('SKIP')} skipped`, exitCode: failed > 0 ? 1 : 0 };
}

/** Parses the command line and the environment into options. Throws {@link SmokeUsageError}. */
export function parseSmokeArgs(args: readonly string[], env: NodeJS.ProcessEnv = process.env): SmokeOptions | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...args],
      options: {
        'outputs-file': { type: 'string' },
        stack: { type: 'string' },
        channel: { type: 'string' },
        'local-user': { type: 'string' },
        'iam-user': { type: 'string' },
        'ticket-url': { type: 'string' },
        region: { type: 'string' },
        'sign-publish': { type: 'boolean' },
        'timeout-ms': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    throw new SmokeUsageError(err instanceof Error ? err.message : String(err));
  }
  if (values.help) return 'help';
  if (!values['outputs-file']) throw new SmokeUsageError('--outputs-file is required (the file of `cdk deploy --outputs-file` or `npm run dev -- --outputs-file`)');
  const endpoints = readOutputs(values['outputs-file'], values.stack);
  let auth: SmokeAuth;
  if (values['local-user']) auth = { kind: 'local', sub: values['local-user'] };
  else if (env.SMOKE_JWT) auth = { kind: 'jwt', token: env.SMOKE_JWT };
  else if (values['iam-user']) auth = { kind: 'iam', sub: values['iam-user'] };
  else throw new SmokeUsageError('no way to get a ticket: set SMOKE_JWT, or pass --iam-user SUB (AWS credentials of a trusted principal), or --local-user SUB (local stack)');
  const timeoutMs = values['timeout-ms'] === undefined ? undefined : Number(values['timeout-ms']);
  if (timeoutMs !== undefined && !(Number.isInteger(timeoutMs) && timeoutMs > 0)) throw new SmokeUsageError('--timeout-ms takes a positive whole number of milliseconds');
  if (values.channel !== undefined && !/^[a-z][a-z0-9-]{0,31}:[A-Za-z0-9_.=@|-]{1,128}$/.test(values.channel)) {
    throw new SmokeUsageError(`--channel "${values.channel}" is not a channel name (namespace:name)`);
  }
  return {
    endpoints,
    auth,
    channel: values.channel,
    ticketUrl: values['ticket-url'],
    region: values.region,
    signPublish: values['sign-publish'],
    timeoutMs,
  };
}

async function main(): Promise<number> {
  let options: SmokeOptions | 'help';
  try {
    options = parseSmokeArgs(process.argv.slice(2));
  } catch (err) {
    console.error(`smoke: ${err instanceof Error ? err.message : String(err)}\n\n${USAGE}`);
    return 2;
  }
  if (options === 'help') {
    console.log(USAGE);
    return 0;
  }
  try {
    const results = await runSmoke(options, (r) => console.log(formatResult(r)));
    const { line, exitCode } = summarise(results);
    console.log(line);
    return exitCode;
  } catch (err) {
    console.error(`smoke: ${err instanceof Error ? err.message : String(err)}`);
    return 2;
  }
}

if (require.main === module) {
  main().then((code) => process.exit(code));
}
