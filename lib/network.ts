import { CfnResource, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { DEFAULTS } from './defaults';
import { checkRange, invalid } from './errors';

/** Properties of a {@link Network}. */
export interface NetworkProps {
  /**
   * An existing VPC (from `Vpc.fromLookup` or `Vpc.fromVpcAttributes`). It needs public subnets for the load balancer
   * and private subnets with egress for the tasks and Lambdas. Excludes `maxAzs`, `natGateways` and `flowLogs`.
   * @default - a new VPC
   */
  readonly vpc?: ec2.IVpc;
  /**
   * Availability Zones of a new VPC (2 to 6). The load balancer and Redis Multi-AZ need at least 2.
   * @default 2
   */
  readonly maxAzs?: number;
  /**
   * NAT gateways of a new VPC (1 to maxAzs). Lambdas and tasks need egress for Secrets Manager, ECR and the
   * API Gateway management endpoint; one per AZ survives an AZ outage, one in total is cheaper.
   * @default 1
   */
  readonly natGateways?: number;
  /**
   * Whether a new VPC records rejected and accepted traffic in VPC flow logs (CloudWatch Logs).
   * @default true
   */
  readonly flowLogs?: boolean;
  /**
   * Whether a new VPC gets endpoints for what the tasks and functions call besides Redis, so that traffic stays off the
   * NAT gateway: interface endpoints (private DNS) for ECR (`ecr.api`, `ecr.dkr`), CloudWatch Logs, SQS and Secrets
   * Manager, and the S3 gateway endpoint (ECR image layers). Each interface endpoint is billed per hour and AZ. Never
   * `execute-api`: with private DNS it would send the WebSocket management calls (PostToConnection) to private APIs only.
   * @default false
   */
  readonly interfaceEndpoints?: boolean;
  /**
   * Retention of the log groups of a new VPC: its flow logs, and the CDK custom resource that empties its default
   * security group (`@aws-cdk/aws-ec2:restrictDefaultSecurityGroup`), which would otherwise log to a group that never
   * expires.
   * @default logs.RetentionDays.ONE_MONTH
   */
  readonly flowLogRetention?: logs.RetentionDays;
}

/** Interface endpoints of {@link NetworkProps.interfaceEndpoints}, by construct id. */
export const INTERFACE_ENDPOINTS: Readonly<Record<string, ec2.InterfaceVpcEndpointAwsService>> = {
  EcrApi: ec2.InterfaceVpcEndpointAwsService.ECR,
  EcrDocker: ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
  Logs: ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
  Sqs: ec2.InterfaceVpcEndpointAwsService.SQS,
  SecretsManager: ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
};

/** Address range of a new VPC (ec2.Vpc's default, spelled out so rules can name it). */
export const VPC_CIDR = '10.0.0.0/16';

/** Construct id (in the stack) of the provider behind `@aws-cdk/aws-ec2:restrictDefaultSecurityGroup`. */
const RESTRICT_DEFAULT_SG_PROVIDER = 'Custom::VpcRestrictDefaultSGCustomResourceProvider';

/** The VPC of the blueprint: a new one (public + private-with-egress subnets) or an existing one. */
export class Network extends Construct {
  public readonly vpc: ec2.IVpc;
  /** Where tasks, Lambdas and Redis run: private subnets with egress. */
  public readonly privateSubnets: ec2.SubnetSelection = { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS };
  /** Where the internet-facing load balancer runs. */
  public readonly publicSubnets: ec2.SubnetSelection = { subnetType: ec2.SubnetType.PUBLIC };

  constructor(scope: Construct, id: string, props: NetworkProps = {}) {
    super(scope, id);
    if (props.vpc) {
      const extra = (['maxAzs', 'natGateways', 'flowLogs', 'interfaceEndpoints', 'flowLogRetention'] as const).filter((k) => props[k] !== undefined);
      if (extra.length > 0) {
        invalid(this, `${extra.join(', ')} only apply to a new VPC, but an existing vpc was given`, `Drop ${extra.join(', ')}, or drop vpc to create one`);
      }
      this.vpc = props.vpc;
      return;
    }
    const maxAzs = props.maxAzs ?? DEFAULTS.network.maxAzs;
    const natGateways = props.natGateways ?? DEFAULTS.network.natGateways;
    checkRange(this, 'maxAzs', maxAzs, 2, 6);
    checkRange(this, 'natGateways', natGateways, 1, maxAzs);

    const vpc = new ec2.Vpc(this, 'Vpc', {
      ipAddresses: ec2.IpAddresses.cidr(VPC_CIDR),
      maxAzs,
      natGateways,
      subnetConfiguration: [
        { name: 'Public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 },
        { name: 'Private', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 22 },
      ],
    });
    if (props.flowLogs ?? DEFAULTS.network.flowLogs) {
      vpc.addFlowLog('FlowLog', {
        destination: ec2.FlowLogDestination.toCloudWatchLogs(
          new logs.LogGroup(this, 'FlowLogGroup', { retention: props.flowLogRetention ?? logs.RetentionDays.ONE_MONTH }),
        ),
        trafficType: ec2.FlowLogTrafficType.ALL,
      });
    }
    if (props.interfaceEndpoints ?? DEFAULTS.network.interfaceEndpoints) {
      const subnets = { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS };
      vpc.addGatewayEndpoint('S3Endpoint', { service: ec2.GatewayVpcEndpointAwsService.S3, subnets: [subnets] });
      for (const [id, service] of Object.entries(INTERFACE_ENDPOINTS)) {
        // HTTPS from inside the VPC only (the literal CIDR, so the rule reads as what it is).
        const endpoint = vpc.addInterfaceEndpoint(`${id}Endpoint`, { service, privateDnsEnabled: true, subnets, open: false });
        endpoint.connections.allowDefaultPortFrom(ec2.Peer.ipv4(VPC_CIDR), 'HTTPS from the VPC');
      }
    }
    retainProviderLogs(Stack.of(this), props.flowLogRetention ?? logs.RetentionDays.ONE_MONTH);
    this.vpc = vpc;
  }
}

/**
 * Gives the provider of the default-security-group custom resource (one per stack, created by `ec2.Vpc`) a log group
 * with a retention: CDK creates its function without one, and Lambda would then log to `/aws/lambda/{name}`, kept forever.
 */
function retainProviderLogs(stack: Stack, retention: logs.RetentionDays): void {
  const provider = stack.node.tryFindChild(RESTRICT_DEFAULT_SG_PROVIDER);
  const handler = provider?.node.tryFindChild('Handler');
  if (!provider || !(handler instanceof CfnResource) || provider.node.tryFindChild('LogGroup')) return;
  const logGroup = new logs.LogGroup(provider, 'LogGroup', { retention });
  handler.addPropertyOverride('LoggingConfig', { LogGroup: logGroup.logGroupName });
}
