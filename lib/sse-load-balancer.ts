import { Duration, RemovalPolicy, Stack, Token, Validations } from 'aws-cdk-lib';
import type * as acm from 'aws-cdk-lib/aws-certificatemanager';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { DEFAULTS } from './defaults';
import { checkRange, invalid } from './errors';

/** Port the SSE server listens on inside the task (`PORT`): the target group's port. */
export const SSE_CONTAINER_PORT = 8080;
/**
 * Path of the SSE server's LIVENESS check: 200 while the process is sound, even when Redis is down. The load balancer
 * health check uses it and nothing else: `/healthz?deep=1` (Redis readiness, 503 when Redis is down) would make the
 * load balancer replace every task at once during a Redis outage, the outage it should ride out.
 */
export const SSE_LIVENESS_PATH = '/healthz';
/** Load balancers in front of the tasks: the runtime takes the client IP from this entry of X-Forwarded-For, from the right. */
export const SSE_PROXY_HOPS = 1;

/** Properties of the load-balancer part of the SSE service ({@link SseLoadBalancerBase}). */
export interface SseLoadBalancerProps {
  readonly vpc: ec2.IVpc;
  /**
   * ALB idle timeout: a connection with no bytes for this long is closed (1 to 4000 s).
   * @default Duration.seconds(60)
   */
  readonly idleTimeout?: Duration;
  /**
   * Time a stopping task stays registered while the load balancer keeps its open streams (10 to 3600 s). The task's
   * drain window (`DRAIN_TIMEOUT_MS`) and the container `stopTimeout` are derived from it by `drainTiming()`: the drain
   * starts when the ECS task metadata reports the task STOPPED and ends inside the delay. A longer delay spreads the
   * reconnects of a stopping task over more time but slows deploys; clients resume with their cursor either way.
   * @default Duration.seconds(30)
   */
  readonly deregistrationDelay?: Duration;
  /**
   * Duration of the load balancer stickiness cookie (1 s to 7 days).
   * @default Duration.hours(1)
   */
  readonly stickinessDuration?: Duration;
  /**
   * Certificate for an HTTPS listener (HTTP/2, TLS); HTTP on port 80 then redirects to it. Requires `domainName`.
   * @default - HTTP only on port 80, and the reconnect cookie is not Secure
   */
  readonly certificate?: acm.ICertificate;
  /**
   * Public host name clients use (a DNS record you point at the load balancer); it must match `certificate`.
   * @default - the load balancer's DNS name
   */
  readonly domainName?: string;
  /**
   * Whether the load balancer writes access logs to S3. ELB delivers them from a per-region principal, so the stack's
   * region must be known (an environment-agnostic stack cannot turn them on).
   * @default - true when the stack has a concrete region, false otherwise
   */
  readonly accessLogs?: boolean;
  /**
   * Whether the load balancer refuses to be deleted (`deletion_protection.enabled`): deleting the stack, or a change
   * that replaces the load balancer, then fails until it is turned off. On for production stages: the load balancer's
   * DNS name is what clients and DNS records point at.
   * @default false
   */
  readonly deletionProtection?: boolean;
  /**
   * Bucket for the load balancer access logs (SSE-S3 encrypted, in the stack's region).
   * @default - a new bucket that expires logs after 90 days
   */
  readonly accessLogsBucket?: s3.IBucket;
}

const HOST_NAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/i;

/**
 * The load-balancer part of the SSE service: an internet-facing ALB (HTTP/2, invalid headers dropped, idle timeout),
 * the HTTPS listener with a redirect from HTTP when a certificate is given (else one HTTP listener), access logs, and
 * the target group the tasks join (IP targets on {@link SSE_CONTAINER_PORT}, sticky by load balancer cookie, liveness
 * health check on {@link SSE_LIVENESS_PATH}, short deregistration delay). The tasks part is {@link SseService}, which
 * extends it, so both parts create their resources in one construct and keep its logical ids (as aws-ecs-patterns'
 * `ApplicationLoadBalancedServiceBase` and its Fargate service do).
 */
export abstract class SseLoadBalancerBase extends Construct {
  public readonly loadBalancer: elbv2.ApplicationLoadBalancer;
  /** The target group the tasks register in (see {@link SseService}). */
  public readonly targetGroup: elbv2.ApplicationTargetGroup;
  /** The listener forwarding to the tasks: HTTPS on 443 with a certificate, else HTTP on 80. */
  public readonly listener: elbv2.ApplicationListener;
  /** Whether clients connect over HTTPS (a certificate was given). */
  public readonly https: boolean;
  /** The deregistration delay of the target group: the tasks part derives its drain window from it. */
  public readonly deregistrationDelay: Duration;
  /** The ALB idle timeout: the tasks part keeps its heartbeat and long-poll timeout below it. */
  public readonly idleTimeout: Duration;
  /** `http(s)://host` */
  public readonly baseUrl: string;
  /** `http(s)://host/events` */
  public readonly eventsUrl: string;
  /** `http(s)://host/poll` */
  public readonly pollUrl: string;
  /**
   * `ws(s)://host/live`: WebSockets on the tasks. The ALB forwards upgrades on the same listener and target group (no
   * listener rule: every path goes to the tasks); the tasks' WebSocket pings (`HEARTBEAT_MS`) keep it inside the idle timeout.
   */
  public readonly liveUrl: string;

  constructor(scope: Construct, id: string, props: SseLoadBalancerProps) {
    super(scope, id);
    const d = DEFAULTS.sse;
    this.idleTimeout = props.idleTimeout ?? Duration.seconds(d.idleTimeoutSeconds);
    this.deregistrationDelay = props.deregistrationDelay ?? Duration.seconds(d.deregistrationDelaySeconds);
    const stickiness = props.stickinessDuration ?? Duration.seconds(d.stickinessDurationSeconds);
    checkRange(this, 'idleTimeout', this.idleTimeout.toSeconds(), 1, 4000, ' seconds');
    checkRange(this, 'deregistrationDelay', this.deregistrationDelay.toSeconds(), 0, 3600, ' seconds');
    checkRange(this, 'stickinessDuration', stickiness.toSeconds(), 1, 604_800, ' seconds');
    if (props.certificate && !props.domainName) {
      invalid(this, 'certificate is set without domainName', 'Set domainName to the host name the certificate covers (and point its DNS record at the load balancer)');
    }
    if (props.domainName && !Token.isUnresolved(props.domainName) && !HOST_NAME.test(props.domainName)) {
      invalid(this, `domainName "${props.domainName}" is not a host name`, 'Set a host name like events.example.com, without scheme or path');
    }
    const regionKnown = !Token.isUnresolved(Stack.of(this).region);
    if (props.accessLogs && !regionKnown) {
      invalid(this, 'accessLogs needs the stack\'s region, but the stack is environment-agnostic', 'Give the stack an env (account and region in the stage config), or drop accessLogs');
    }
    if (props.accessLogsBucket && props.accessLogs === false) {
      invalid(this, 'accessLogsBucket is set but accessLogs is false', 'Drop accessLogsBucket, or turn accessLogs on');
    }
    this.https = props.certificate !== undefined;

    this.loadBalancer = new elbv2.ApplicationLoadBalancer(this, 'LoadBalancer', {
      vpc: props.vpc,
      internetFacing: true,
      vpcSubnets: { subnetType: ec2.SubnetType.PUBLIC },
      http2Enabled: true,
      idleTimeout: this.idleTimeout,
      dropInvalidHeaderFields: true,
      deletionProtection: props.deletionProtection ?? d.deletionProtection,
    });
    if (props.accessLogs ?? regionKnown) {
      this.loadBalancer.logAccessLogs(props.accessLogsBucket ?? this.createAccessLogsBucket(), 'sse');
    } else {
      Validations.of(this.loadBalancer).acknowledge({
        id: 'AwsSolutions-ELB2',
        reason: 'Access logs are off because this stack is environment-agnostic: ELB delivers logs from a per-region principal, so the region must be known. Set account and region in the stage config to turn them on.',
      });
    }
    Validations.of(this.loadBalancer).acknowledge({
      id: 'AwsSolutions-EC23',
      reason: 'Internet-facing endpoint for browsers: the listener ports are open to everyone by design; tasks admit only this load balancer.',
    });

    this.targetGroup = new elbv2.ApplicationTargetGroup(this, 'Targets', {
      vpc: props.vpc,
      port: SSE_CONTAINER_PORT,
      protocol: elbv2.ApplicationProtocol.HTTP,
      targetType: elbv2.TargetType.IP,
      deregistrationDelay: this.deregistrationDelay,
      stickinessCookieDuration: stickiness,
      healthCheck: {
        path: SSE_LIVENESS_PATH,
        healthyHttpCodes: '200',
        interval: Duration.seconds(15),
        timeout: Duration.seconds(5),
        healthyThresholdCount: 2,
        unhealthyThresholdCount: 3,
      },
    });

    if (props.certificate) {
      this.listener = this.loadBalancer.addListener('Https', {
        protocol: elbv2.ApplicationProtocol.HTTPS,
        port: 443,
        certificates: [props.certificate],
        defaultTargetGroups: [this.targetGroup],
        open: true,
      });
      this.loadBalancer.addRedirect({ sourcePort: 80, sourceProtocol: elbv2.ApplicationProtocol.HTTP, targetPort: 443, targetProtocol: elbv2.ApplicationProtocol.HTTPS });
    } else {
      this.listener = this.loadBalancer.addListener('Http', {
        protocol: elbv2.ApplicationProtocol.HTTP,
        port: 80,
        defaultTargetGroups: [this.targetGroup],
        open: true,
      });
    }
    const host = props.domainName ?? this.loadBalancer.loadBalancerDnsName;
    this.baseUrl = `${this.https ? 'https' : 'http'}://${host}`;
    this.eventsUrl = `${this.baseUrl}/events`;
    this.pollUrl = `${this.baseUrl}/poll`;
    this.liveUrl = `${this.https ? 'wss' : 'ws'}://${host}/live`;
  }

  private createAccessLogsBucket(): s3.Bucket {
    const bucket = new s3.Bucket(this, 'AccessLogs', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      lifecycleRules: [{ expiration: Duration.days(90) }],
      removalPolicy: RemovalPolicy.RETAIN,
    });
    Validations.of(bucket).acknowledge({
      id: 'AwsSolutions-S1',
      reason: 'This bucket is itself the access log destination of the load balancer; logging it to another bucket would only move the question.',
    });
    return bucket;
  }
}
