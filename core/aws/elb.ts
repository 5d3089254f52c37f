import { postText, signFormPost, type CredentialProvider } from './signer';

/**
 * Elastic Load Balancing v2 `DescribeTargetHealth` for one target, without the SDK: the Query protocol (a
 * form-encoded `POST /` with `Action=DescribeTargetHealth&Version=2015-12-01`, an XML answer), SigV4-signed for the
 * `elasticloadbalancing` service. The SSE task asks for its own target (its private IP and container port) to learn
 * that the load balancer started draining it (`TargetHealth.State` = `draining`, Elastic Load Balancing User Guide,
 * "Deregistration delay"). API reference: https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_DescribeTargetHealth.html
 */

export const ELB_API_VERSION = '2015-12-01';

export interface TargetHealthOptions {
  /** The target group's ARN; its region is the signing region. Required. */
  readonly targetGroupArn: string;
  /** Where the credentials come from (the task role). Required. */
  readonly credentials: CredentialProvider;
  /**
   * The API endpoint. Defaults to `AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2` or `AWS_ENDPOINT_URL` when set (the
   * SDKs' service-specific endpoint variables), else `https://elasticloadbalancing.<region>.amazonaws.com` (`.com.cn` in
   * the China partition).
   */
  readonly endpoint?: string;
  /** The variables the endpoint is read from. Defaults to `process.env`. */
  readonly env?: NodeJS.ProcessEnv;
  /** Milliseconds before a call is abandoned. Defaults to 5000. */
  readonly timeoutMs?: number;
  /** The signing clock. Defaults to the system clock. */
  readonly now?: () => Date;
}

/** An error answer of the ELB API (`<ErrorResponse><Error><Code>`), or a transport failure. */
export class ElbApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'ElbApiError';
  }
}

/** The parts of a target group ARN the call needs: `arn:<partition>:elasticloadbalancing:<region>:<account>:targetgroup/…`. */
export function parseTargetGroupArn(arn: string): { partition: string; region: string } | undefined {
  const m = /^arn:(aws[a-z-]*):elasticloadbalancing:([a-z0-9-]+):\d{12}:targetgroup\/[^/]+\/[0-9a-f]+$/.exec(arn);
  return m ? { partition: m[1], region: m[2] } : undefined;
}

/** The first `<name>…</name>` inside `xml`, entities decoded; undefined when absent. */
function element(xml: string, name: string): string | undefined {
  const m = new RegExp(`<${name}>([\\s\\S]*?)</${name}>`).exec(xml);
  if (!m) return undefined;
  return m[1].replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, '&').trim();
}

export interface TargetHealth {
  /** `initial`, `healthy`, `unhealthy`, `unhealthy.draining`, `unused`, `draining` or `unavailable`. */
  readonly state: string;
  /** The reason code, e.g. `Target.DeregistrationInProgress`; undefined when healthy. */
  readonly reason?: string;
}

/**
 * A client for one target group. {@link describe} asks for one target's health and resolves with its state, or
 * rejects with an {@link ElbApiError} (throttling, missing permission, an unknown target group).
 */
export class TargetHealthClient {
  private readonly endpoint: URL;
  private readonly region: string;

  constructor(private readonly options: TargetHealthOptions) {
    const arn = parseTargetGroupArn(options.targetGroupArn);
    if (!arn) throw new ElbApiError('ValidationError', `not a target group ARN: ${options.targetGroupArn}`);
    this.region = arn.region;
    const env = options.env ?? process.env;
    const configured = options.endpoint ?? env.AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2 ?? env.AWS_ENDPOINT_URL;
    this.endpoint = new URL(configured ?? `https://elasticloadbalancing.${arn.region}.amazonaws.com${arn.partition === 'aws-cn' ? '.cn' : ''}/`);
  }

  /** The health of target `id` (an IP address for `ip` target groups) on `port`. */
  async describe(id: string, port: number): Promise<TargetHealth> {
    const body = new URLSearchParams({
      Action: 'DescribeTargetHealth',
      Version: ELB_API_VERSION,
      TargetGroupArn: this.options.targetGroupArn,
      'Targets.member.1.Id': id,
      'Targets.member.1.Port': String(port),
    }).toString();
    const creds = await this.options.credentials();
    const url = new URL('/', this.endpoint);
    const headers = signFormPost(url.host, body, this.region, 'elasticloadbalancing', creds, this.options.now?.() ?? new Date());
    let res;
    try {
      res = await postText(url, headers, body, { timeoutMs: this.options.timeoutMs ?? 5000, what: 'DescribeTargetHealth' });
    } catch (err) {
      throw new ElbApiError(err instanceof Error ? err.name : 'NetworkError', `DescribeTargetHealth failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (res.status < 200 || res.status > 299) {
      const error = element(res.text, 'Error') ?? '';
      throw new ElbApiError(element(error, 'Code') ?? `HTTP${res.status}`, element(error, 'Message') ?? `DescribeTargetHealth answered ${res.status}`, res.status);
    }
    const health = element(element(res.text, 'TargetHealthDescriptions') ?? '', 'TargetHealth');
    const state = health === undefined ? undefined : element(health, 'State');
    if (!state) throw new ElbApiError('MalformedAnswer', 'DescribeTargetHealth answered without a TargetHealth State');
    return { state, reason: health === undefined ? undefined : element(health, 'Reason') };
  }
}
