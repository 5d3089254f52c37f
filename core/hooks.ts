import type { ParsedChannel } from './channels';
import type { Hook, Namespaces } from './config';
import { RealtimeError } from './errors';

/**
 * Hooks: the app's own decisions, asked synchronously of a function it names per namespace (`hooks` in the namespace
 * table). `subscribe` is asked when a ticket names the namespace's channels: allow, deny, or narrow the channels.
 * `publish` is asked for each client publish (a WebSocket `publish` frame on `/live` or API Gateway; backends are
 * trusted and never asked): accept, reject with the app's code, or replace `data`.
 *
 * A hook that fails (an error, no answer within its `timeoutMs`, an answer of another shape) follows its `onError`:
 * `deny` (the default: fail closed, the ticket or publish is refused with `503 unavailable`, nothing written) or `allow`
 * (as if it had allowed, unchanged). The call goes through {@link HookInvoker}, a port: Lambda's Invoke API on AWS
 * (`core/aws/lambda-invoke.ts`), a local function or HTTP endpoint in the local stack.
 */

/** Calls the function named by a hook with a JSON payload and resolves with its JSON answer (rejects when it fails). */
export interface HookInvoker {
  invoke(fn: string, payload: string, timeoutMs: number): Promise<unknown>;
}

/** What a subscribe hook is asked: one namespace's channels of one ticket. */
export interface SubscribeHookEvent {
  readonly hook: 'subscribe';
  readonly namespace: string;
  readonly channels: readonly string[];
  readonly sub: string;
  readonly byBackend: boolean;
  readonly transport: string;
}

/** What a publish hook is asked: one client publish, validated (the namespace allows the user to publish). */
export interface PublishHookEvent {
  readonly hook: 'publish';
  readonly namespace: string;
  readonly channel: string;
  readonly type: string;
  readonly data: unknown;
  readonly sub: string;
}

/** True when a namespace has a hook (a runtime then needs an invoker). */
export function hasHooks(namespaces: Namespaces): boolean {
  return Object.values(namespaces).some((ns) => ns.hooks?.subscribe !== undefined || ns.hooks?.publish !== undefined);
}

const REASON = /^[A-Za-z][A-Za-z0-9_.:-]{0,63}$/;

/** The answer, or `undefined` when the hook failed (error, timeout, wrong shape) and its policy is to allow. */
async function ask(hook: Hook, event: SubscribeHookEvent | PublishHookEvent, invoker: HookInvoker, accept: (answer: unknown) => boolean): Promise<Record<string, unknown> | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let failure: string;
  try {
    const answer = await Promise.race([
      invoker.invoke(hook.function, JSON.stringify(event), hook.timeoutMs),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new HookTimeout()), hook.timeoutMs);
      }),
    ]);
    if (answer !== null && typeof answer === 'object' && !Array.isArray(answer) && accept(answer)) return answer as Record<string, unknown>;
    failure = 'answered in another shape';
  } catch (err) {
    failure = err instanceof HookTimeout ? `did not answer within ${hook.timeoutMs} ms` : 'failed';
  } finally {
    clearTimeout(timer);
  }
  if (hook.onError === 'allow') return undefined;
  throw new RealtimeError('unavailable', `The ${event.hook} hook of namespace "${event.namespace}" ${failure}; nothing was ${event.hook === 'publish' ? 'published' : 'issued'} (its failure policy is deny). Retry shortly.`);
}

class HookTimeout extends Error {}

/**
 * Asks each namespace's subscribe hook about its channels of a ticket; returns the channels allowed (narrowed ones
 * dropped). Throws `channel_not_granted` when a hook denies or nothing is left, `unavailable` when a failing hook's
 * policy is deny.
 */
export async function askSubscribeHooks(channels: readonly ParsedChannel[], who: { sub: string; byBackend: boolean; transport: string }, invoker: HookInvoker): Promise<ParsedChannel[]> {
  const byNamespace = new Map<string, ParsedChannel[]>();
  for (const c of channels) if (c.policy.hooks?.subscribe) byNamespace.set(c.namespace, [...(byNamespace.get(c.namespace) ?? []), c]);
  if (byNamespace.size === 0) return [...channels];
  const dropped = new Set<string>();
  await Promise.all(
    [...byNamespace].map(async ([namespace, list]) => {
      const names = list.map((c) => c.channel);
      const event: SubscribeHookEvent = { hook: 'subscribe', namespace, channels: names, sub: who.sub, byBackend: who.byBackend, transport: who.transport };
      const answer = await ask(list[0].policy.hooks!.subscribe!, event, invoker, (a) => {
        const r = a as Record<string, unknown>;
        return (r.result === 'allow' || r.result === 'deny') && (r.channels === undefined || (Array.isArray(r.channels) && r.channels.every((c) => typeof c === 'string')));
      });
      if (!answer) return;
      if (answer.result === 'deny') {
        const why = typeof answer.message === 'string' ? ` ${answer.message.slice(0, 200)}` : '';
        throw new RealtimeError('channel_not_granted', `The app refused ${names.join(', ')}.${why}`);
      }
      if (Array.isArray(answer.channels)) {
        const kept = new Set(answer.channels as string[]);
        for (const n of names) if (!kept.has(n)) dropped.add(n);
      }
    }),
  );
  const left = channels.filter((c) => !dropped.has(c.channel));
  if (left.length === 0) throw new RealtimeError('channel_not_granted', `The app allowed none of ${channels.map((c) => c.channel).join(', ')}.`);
  return left;
}

/**
 * Asks the channel's publish hook (when its namespace has one) about a client publish; returns the `data` to publish
 * (the hook's replacement, or the original). Throws `publish_rejected` (403, with the hook's code as `reason`) when it
 * rejects, `unavailable` when a failing hook's policy is deny.
 */
export async function askPublishHook(ch: ParsedChannel, type: string, data: unknown, sub: string, invoker: HookInvoker): Promise<unknown> {
  const hook = ch.policy.hooks?.publish;
  if (!hook) return data;
  const event: PublishHookEvent = { hook: 'publish', namespace: ch.namespace, channel: ch.channel, type, data, sub };
  const answer = await ask(hook, event, invoker, (a) => {
    const r = a as Record<string, unknown>;
    return r.result === 'accept' || (r.result === 'reject' && (r.code === undefined || (typeof r.code === 'string' && REASON.test(r.code))));
  });
  if (!answer) return data;
  if (answer.result === 'reject') {
    const why = typeof answer.message === 'string' ? answer.message.slice(0, 200) : 'The app rejected this event.';
    throw new RealtimeError('publish_rejected', why, { reason: typeof answer.code === 'string' ? answer.code : 'rejected' });
  }
  return Object.prototype.hasOwnProperty.call(answer, 'data') ? answer.data : data;
}
