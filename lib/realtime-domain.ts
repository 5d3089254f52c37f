import { Token } from 'aws-cdk-lib';
import * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import * as acm from 'aws-cdk-lib/aws-certificatemanager';
import type * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as route53 from 'aws-cdk-lib/aws-route53';
import * as targets from 'aws-cdk-lib/aws-route53-targets';
import { Construct } from 'constructs';
import { invalid } from './errors';

/** The host label of each endpoint under {@link RealtimeDomainProps.domainName}. */
export interface RealtimeHostLabels {
  /** @default 'events' - `https://events.{domainName}/events` and `/poll` (the ALB) */
  readonly sse?: string;
  /** @default 'ws' - `wss://ws.{domainName}` (the WebSocket API) */
  readonly webSocket?: string;
  /** @default 'api' - `https://api.{domainName}/tickets` (the ticket API) */
  readonly tickets?: string;
  /** @default 'publish' - `https://publish.{domainName}/publish` and `/revoke` (the publish API) */
  readonly publish?: string;
}

/** Properties of a {@link RealtimeDomain}. */
export interface RealtimeDomainProps {
  /** The public hosted zone that holds `domainName` (for certificate validation and the alias records). */
  readonly hostedZone: route53.IHostedZone;
  /** The name every endpoint lives under, e.g. `realtime.example.com` (the zone's name or a name inside it). */
  readonly domainName: string;
  /**
   * A certificate covering `*.{domainName}` in the stack's region.
   * @default - a new ACM certificate for `domainName` and `*.{domainName}`, validated by DNS in `hostedZone`
   */
  readonly certificate?: acm.ICertificate;
  /**
   * Host labels of the endpoints.
   * @default - events, ws, api, publish
   */
  readonly hostLabels?: RealtimeHostLabels;
}

const HOST_NAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;
const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * One domain for every endpoint: one ACM certificate (DNS-validated in the hosted zone) for `{domainName}` and
 * `*.{domainName}`, and a host per endpoint with an A alias record: the SSE load balancer
 * ({@link aliasLoadBalancer}; the load balancer's HTTPS listener takes {@link certificate} and {@link sseHost}), and
 * API Gateway custom domains with API mappings for the WebSocket and HTTP APIs ({@link mapWebSocketApi},
 * {@link mapHttpApi}). Create it before the SSE service (which needs the certificate) and map the APIs once they exist.
 */
export class RealtimeDomain extends Construct {
  public readonly certificate: acm.ICertificate;
  public readonly hostedZone: route53.IHostedZone;
  public readonly sseHost: string;
  public readonly webSocketHost: string;
  public readonly ticketHost: string;
  public readonly publishHost: string;

  constructor(scope: Construct, id: string, props: RealtimeDomainProps) {
    super(scope, id);
    const name = props.domainName;
    if (!Token.isUnresolved(name) && !HOST_NAME.test(name)) {
      invalid(this, `domainName "${name}" is not a lowercase host name`, 'Set a name like realtime.example.com, without scheme, path or trailing dot');
    }
    const zoneName = props.hostedZone.zoneName;
    if (!Token.isUnresolved(name) && !Token.isUnresolved(zoneName) && name !== zoneName && !name.endsWith(`.${zoneName}`)) {
      invalid(this, `domainName "${name}" is not in the hosted zone ${zoneName}`, `Use ${zoneName} or a name ending in .${zoneName}, or pass the zone that holds ${name}`);
    }
    const labels = { sse: 'events', webSocket: 'ws', tickets: 'api', publish: 'publish', ...props.hostLabels };
    const bad = Object.entries(labels).filter(([, l]) => !LABEL.test(l));
    if (bad.length > 0) invalid(this, `hostLabels ${bad.map(([k, l]) => `${k} "${l}"`).join(', ')} are not DNS labels`, 'Use one lowercase label each, like events or ws');
    if (new Set(Object.values(labels)).size !== 4) invalid(this, `hostLabels must differ (${Object.values(labels).join(', ')})`, 'Give each endpoint its own label');

    this.hostedZone = props.hostedZone;
    this.sseHost = `${labels.sse}.${name}`;
    this.webSocketHost = `${labels.webSocket}.${name}`;
    this.ticketHost = `${labels.tickets}.${name}`;
    this.publishHost = `${labels.publish}.${name}`;
    this.certificate =
      props.certificate ??
      new acm.Certificate(this, 'Certificate', {
        domainName: name,
        subjectAlternativeNames: [`*.${name}`],
        validation: acm.CertificateValidation.fromDns(props.hostedZone),
      });
  }

  /** The A alias record of {@link sseHost} to the load balancer (whose HTTPS listener serves {@link certificate}). */
  public aliasLoadBalancer(loadBalancer: elbv2.IApplicationLoadBalancer): void {
    this.alias('Sse', this.sseHost, route53.RecordTarget.fromAlias(new targets.LoadBalancerTarget(loadBalancer)));
  }

  /** The custom domain {@link webSocketHost} mapped to the stage at its root: `wss://{webSocketHost}`. Returns that URL. */
  public mapWebSocketApi(api: apigwv2.IWebSocketApi, stage: apigwv2.IWebSocketStage): string {
    const domain = this.apiDomain('WebSocket', this.webSocketHost);
    new apigwv2.ApiMapping(this, 'WebSocketMapping', { api, stage, domainName: domain });
    return `wss://${this.webSocketHost}`;
  }

  /** The custom domain `host` ({@link ticketHost} or {@link publishHost}) mapped to an HTTP API's stage at its root. Returns `https://{host}`. */
  public mapHttpApi(id: string, host: string, api: apigwv2.IHttpApi, stage: apigwv2.IHttpStage): string {
    const domain = this.apiDomain(id, host);
    new apigwv2.ApiMapping(this, `${id}Mapping`, { api, stage, domainName: domain });
    return `https://${host}`;
  }

  private apiDomain(id: string, host: string): apigwv2.DomainName {
    const domain = new apigwv2.DomainName(this, `${id}Domain`, { domainName: host, certificate: this.certificate, securityPolicy: apigwv2.SecurityPolicy.TLS_1_2 });
    this.alias(id, host, route53.RecordTarget.fromAlias(new targets.ApiGatewayv2DomainProperties(domain.regionalDomainName, domain.regionalHostedZoneId)));
    return domain;
  }

  private alias(id: string, host: string, target: route53.RecordTarget): void {
    // A only: the load balancer and the regional API Gateway domains are IPv4 endpoints.
    new route53.ARecord(this, `${id}Alias`, { zone: this.hostedZone, recordName: host, target });
  }
}
