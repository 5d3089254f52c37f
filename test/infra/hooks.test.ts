/**
 * Hooks in the template (issue 25): `lambda:InvokeFunction` on the functions the namespaces' hooks name, and only for
 * their callers: the ticket issuer (subscribe hooks), the WebSocket message handler and the task role (publish hooks).
 */
import { Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { RealtimeApi } from '../../lib/realtime-api';
import { newApp } from './support';

const ENV = { account: '123456789012', region: 'eu-west-1' };
const NAMESPACES = {
  chat: { subscribe: 'authenticated', publish: 'authenticated', hooks: { publish: { function: 'moderate:live' }, subscribe: { function: '123456789012:function:rooms' } } },
  scores: { subscribe: 'public' },
};

/** Every role (by logical id) whose policies allow `lambda:InvokeFunction`, with the resources. */
function invokers(template: Template, stack: Stack): Record<string, unknown[]> {
  const out: Record<string, unknown[]> = {};
  for (const policy of Object.values(template.findResources('AWS::IAM::Policy'))) {
    for (const st of policy.Properties.PolicyDocument.Statement as { Action: string | string[]; Resource: unknown }[]) {
      const actions = ([] as string[]).concat(st.Action);
      if (!actions.some((a) => a.startsWith('lambda:Invoke'))) continue;
      for (const role of policy.Properties.Roles as { Ref: string }[]) (out[role.Ref] ??= []).push(...([] as unknown[]).concat(stack.resolve(st.Resource)));
    }
  }
  return out;
}

describe('hooks: invoke permission for the callers only', () => {
  const app = newApp();
  const stack = new Stack(app, 'Hooked', { env: ENV });
  const api = new RealtimeApi(stack, 'Realtime', { namespaces: NAMESPACES, webSocket: { mode: 'both' } });
  const template = Template.fromStack(stack);
  const roleOf = (role: { node: { defaultChild?: unknown } } | undefined) => stack.resolve((role as unknown as { roleName: string }).roleName).Ref as string;
  const arn = (name: string) => `arn:aws:lambda:eu-west-1:123456789012:function:${name}`;

  test('ticket issuer: the subscribe hook only; message handler and task role: the publish hook only; no one else', () => {
    const got = invokers(template, stack);
    expect(got).toEqual({
      [roleOf(api.ticketApi.handler.function.role)]: [arn('rooms')],
      [roleOf(api.webSocket!.messageFunction.function.role)]: [arn('moderate:live')],
      [roleOf(api.sse.taskDefinition.taskRole)]: [arn('moderate:live')],
    });
  });

  test('no hooks: no invoke permission anywhere', () => {
    const plain = new Stack(newApp(), 'Plain', { env: ENV });
    new RealtimeApi(plain, 'Realtime', { namespaces: { chat: { subscribe: 'authenticated' } } });
    expect(invokers(Template.fromStack(plain), plain)).toEqual({});
  });
});
