/**
 * Network: a new VPC (subnets, NAT gateways, flow logs) or an existing one, and the checks on its props.
 */
import { Stack } from 'aws-cdk-lib';
import { Match, type Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { BlueprintValidationError } from '../../lib/errors';
import { Network, type NetworkProps } from '../../lib/network';
import { buildStack, newApp, templateOf, useStageTemplate } from './support';

describe('dev stage (cdk.json, IAM tickets, HTTP listener, single Redis node)', () => {
  let template: Template;
  useStageTemplate('dev', (_s, t) => (template = t));

  test('network: a new VPC over 2 AZs, private subnets with a NAT route, one NAT gateway, flow logs on', () => {
    template.resourceCountIs('AWS::EC2::VPC', 1);
    template.resourceCountIs('AWS::EC2::NatGateway', 1);
    template.resourcePropertiesCountIs('AWS::EC2::Subnet', { MapPublicIpOnLaunch: false }, 2);
    template.resourcePropertiesCountIs('AWS::EC2::Subnet', { MapPublicIpOnLaunch: true }, 2);
    template.resourcePropertiesCountIs('AWS::EC2::Route', { DestinationCidrBlock: '0.0.0.0/0', NatGatewayId: Match.anyValue() }, 2);
    template.hasResourceProperties('AWS::EC2::FlowLog', { TrafficType: 'ALL', LogDestinationType: 'cloud-watch-logs' });
  });
});

describe('prod stage (cdk.json: HTTPS, JWT tickets, two Redis nodes, pinned env)', () => {
  let template: Template;
  useStageTemplate('prod', (_s, t) => (template = t));

  test('network: one NAT gateway per AZ', () => {
    template.resourceCountIs('AWS::EC2::NatGateway', 2);
  });
});

describe('configs that switch behaviour', () => {
  test('existing VPC by attributes: no VPC created, the tasks, Lambdas and Redis use the given subnets', () => {
    const template = templateOf(
      buildStack({
        network: {
          vpcAttributes: {
            vpcId: 'vpc-0123456789abcdef0',
            availabilityZones: ['eu-west-1a', 'eu-west-1b'],
            publicSubnetIds: ['subnet-0aaaaaaaaaaaaaaa1', 'subnet-0aaaaaaaaaaaaaaa2'],
            privateSubnetIds: ['subnet-0bbbbbbbbbbbbbbb1', 'subnet-0bbbbbbbbbbbbbbb2'],
          },
        },
      }),
    );
    template.resourceCountIs('AWS::EC2::VPC', 0);
    template.resourceCountIs('AWS::EC2::NatGateway', 0);
    template.hasResourceProperties('AWS::ElastiCache::SubnetGroup', { SubnetIds: ['subnet-0bbbbbbbbbbbbbbb1', 'subnet-0bbbbbbbbbbbbbbb2'] });
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::LoadBalancer', { Subnets: ['subnet-0aaaaaaaaaaaaaaa1', 'subnet-0aaaaaaaaaaaaaaa2'] });
    template.allResourcesProperties('AWS::Lambda::Function', { VpcConfig: Match.objectLike({ SubnetIds: ['subnet-0bbbbbbbbbbbbbbb1', 'subnet-0bbbbbbbbbbbbbbb2'] }) });
  });
});

describe('Network validation', () => {
  const make = (props: NetworkProps) => () => new Network(new Stack(newApp(), 'Fixture'), 'Network', props);

  test.each<[string, NetworkProps, RegExp]>([
    ['maxAzs below 2', { maxAzs: 1 }, /^Fixture\/Network: maxAzs \(1\) must be an integer from 2 to 6\. Set maxAzs within that range$/],
    ['no NAT gateway', { natGateways: 0 }, /^Fixture\/Network: natGateways \(0\) must be an integer from 1 to 2\. Set natGateways within that range$/],
    ['more NAT gateways than AZs', { maxAzs: 2, natGateways: 3 }, /natGateways \(3\) must be an integer from 1 to 2/],
  ])('%s: fails', (_name, props, message) => {
    expect(make(props)).toThrow(message);
  });

  test('existing vpc with new-VPC options: fails, naming the options to drop', () => {
    const stack = new Stack(newApp(), 'Fixture');
    const vpc = new ec2.Vpc(stack, 'Existing');
    expect(() => new Network(stack, 'Network', { vpc, maxAzs: 3, flowLogs: false })).toThrow(
      /^Fixture\/Network: maxAzs, flowLogs only apply to a new VPC, but an existing vpc was given\. Drop maxAzs, flowLogs, or drop vpc to create one$/,
    );
  });

  test('errors are BlueprintValidationError', () => {
    expect(make({ maxAzs: 7 })).toThrow(BlueprintValidationError);
  });
});