import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { SIGNING_SERVICE, signRequest, type AwsCredentials } from '../server-sdk/src/sigv4';

/**
 * SigV4 verification for the local stack's IAM routes (`/publish`, `/revoke`, `/backend/tickets`), so a backend's
 * first signed call is checked before it reaches AWS. Off by default (the routes then trust any caller, as before).
 *
 * It checks what API Gateway's IAM authorisation checks before a route runs (HTTP APIs: "clients must use Signature
 * Version 4 (SigV4) to sign their requests with AWS credentials", Control access to HTTP APIs with IAM authorization,
 * https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-access-control-iam.html): a SigV4
 * `Authorization` header, credentials it knows, the scope's region and service (`execute-api`), a time stamp within
 * five minutes (AWS Signature Version 4 for API requests, https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_aws-signing.html),
 * the body's hash, and the signature recomputed by `@smithy/signature-v4` over the signed headers. Every refusal is a
 * 403 with API Gateway's `{"message"}` body; nothing reaches the handler. IAM policies (which principal may invoke
 * which route) are not modelled: the handlers' `trustedPrincipals` check runs as on AWS.
 */
export interface LocalSignatureOptions {
  /** The credentials whose signatures are accepted: the developer's own (`npm run dev -- --verify-signatures` resolves them with the AWS SDK's chain). */
  readonly credentials: AwsCredentials;
  /** Region the credential scope must name. */
  readonly region: string;
  /** Largest difference between the request's `x-amz-date` and now, in milliseconds. Defaults to 300000 (AWS's five minutes). */
  readonly maxSkewMs?: number;
}

/** API Gateway's answers to a request its IAM authorisation refuses (status 403). */
export const SIGV4_REFUSALS = {
  missing: 'Forbidden',
  unknownKey: 'The security token included in the request is invalid.',
  mismatch: 'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.',
} as const;

const AUTH = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/;

/** Parses `x-amz-date` (`20250101T120000Z`). */
function amzDate(v: string | undefined): Date | undefined {
  const m = v && /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(v);
  return m ? new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6])) : undefined;
}

const header = (req: IncomingMessage, name: string): string | undefined => {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(',') : v;
};

/** Verifies the request's signature; returns API Gateway's refusal message, or undefined when it is valid. */
export async function verifySignature(req: IncomingMessage, url: URL, body: Buffer, options: LocalSignatureOptions, now = Date.now()): Promise<string | undefined> {
  const auth = header(req, 'authorization');
  if (!auth) return SIGV4_REFUSALS.missing;
  const m = AUTH.exec(auth);
  if (!m) return `Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters (AWS4-HMAC-SHA256). Authorization=${auth.split(' ')[0]}`;
  const [, keyId, scopeDate, region, service, signedList, signature] = m;
  const creds = options.credentials;
  if (keyId !== creds.accessKeyId) return SIGV4_REFUSALS.unknownKey;
  const token = header(req, 'x-amz-security-token');
  if ((creds.sessionToken ?? undefined) !== token) return SIGV4_REFUSALS.unknownKey;
  if (service !== SIGNING_SERVICE) return `Credential should be scoped to correct service: '${SIGNING_SERVICE}'.`;
  if (region !== options.region) return `Credential should be scoped to a valid region, not '${region}'.`;
  const date = amzDate(header(req, 'x-amz-date'));
  if (!date) return SIGV4_REFUSALS.mismatch;
  if (Math.abs(now - date.getTime()) > (options.maxSkewMs ?? 300_000)) return `Signature expired: ${header(req, 'x-amz-date')} is now earlier than the five minutes allowed.`;
  if (scopeDate !== header(req, 'x-amz-date')!.slice(0, 8)) return SIGV4_REFUSALS.mismatch;
  const declared = header(req, 'x-amz-content-sha256');
  if (declared !== undefined && declared !== createHash('sha256').update(body).digest('hex')) return SIGV4_REFUSALS.mismatch;
  const signed = signedList.split(';');
  if (!signed.includes('host')) return SIGV4_REFUSALS.mismatch;
  const headers: Record<string, string> = {};
  for (const name of signed) {
    const v = header(req, name);
    if (v === undefined) return SIGV4_REFUSALS.mismatch;
    headers[name] = v;
  }
  const query: Record<string, string | string[]> = {};
  for (const [k, v] of url.searchParams) {
    const prev = query[k];
    query[k] = prev === undefined ? v : ([] as string[]).concat(prev, v);
  }
  const expected = await signRequest(
    { method: req.method ?? 'GET', protocol: 'http:', hostname: url.hostname, path: url.pathname, query, headers, body },
    region,
    { accessKeyId: creds.accessKeyId, secretAccessKey: creds.secretAccessKey, sessionToken: creds.sessionToken },
    // Only what the caller signed: no checksum header added (a signer need not send x-amz-content-sha256).
    { signingDate: date, signableHeaders: new Set(signed), applyChecksum: false },
  );
  const want = /Signature=([0-9a-f]{64})$/.exec(expected.authorization)?.[1] ?? '';
  const ok = want.length === signature.length && timingSafeEqual(Buffer.from(want), Buffer.from(signature));
  return ok ? undefined : SIGV4_REFUSALS.mismatch;
}
