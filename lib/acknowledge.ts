import { Stack, Validations } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';

/**
 * Acknowledges one cdk-nag `AwsSolutions-IAM5` finding, for one wildcard resource ARN, on one construct (a role or
 * policy), instead of every wildcard on it. cdk-nag names such a finding `AwsSolutions-IAM5[Resource::<flat ARN>]`,
 * where the ARN is flattened as below (`Ref` becomes `<Id>`, `Fn::GetAtt` becomes `<Id.Attr>`, `Fn::Join` is joined).
 */
export function acknowledgeWildcardResource(scope: IConstruct, arn: string, reason: string): void {
  const flat = arn === '*' ? '*' : flattenCfn(Stack.of(scope).resolve(arn));
  Validations.of(scope).acknowledge({ id: `AwsSolutions-IAM5[Resource::${flat}]`, reason });
}

/** Acknowledges cdk-nag `AwsSolutions-IAM4` for one AWS managed policy on one role. */
export function acknowledgeManagedPolicy(scope: IConstruct, policyName: string, reason: string): void {
  Validations.of(scope).acknowledge({ id: `AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/${policyName}]`, reason });
}

function flattenCfn(node: unknown): string {
  if (typeof node === 'string') return node.replace(/\$\{/g, '<').replace(/\}/g, '>');
  if (node && typeof node === 'object') {
    const o = node as Record<string, unknown>;
    if ('Fn::Join' in o) {
      const [delimiter, items] = o['Fn::Join'] as [string, unknown[]];
      return items.map(flattenCfn).join(delimiter);
    }
    if ('Fn::Sub' in o) return flattenCfn(o['Fn::Sub']);
    if ('Fn::GetAtt' in o) {
      const [resource, attribute] = o['Fn::GetAtt'] as [unknown, unknown];
      return `<${flattenCfn(resource)}.${flattenCfn(attribute)}>`;
    }
    if ('Ref' in o) return `<${flattenCfn(o.Ref)}>`;
  }
  return JSON.stringify(node);
}
