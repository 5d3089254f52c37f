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
   * Retention of the flow log group.
   * @default logs.RetentionDays.ONE_MONTH
   */
  readonly flowLogRetention?: logs.RetentionDays;
}

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
      const extra = (['maxAzs', 'natGateways', 'flowLogs', 'flowLogRetention'] as const).filter((k) => props[k] !== undefined);
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
    this.vpc = vpc;
  }
}
