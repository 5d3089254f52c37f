import { createHmac, timingSafeEqual } from 'node:crypto';
import { sha256 } from './keys';

/**
 * The reconnect session: what the first redemption of a ticket leaves the browser so that native
 * `EventSource` reconnects (which resend the spent ticket) keep working. It is a signed, short-lived,
 * HttpOnly cookie bound to the identity and the exact channel set of the connection; its name is
 * derived from that set, so several streams of one page never overwrite each other's cookie.
 */
export interface SessionGrant {
  readonly sub: string;
  readonly channels: readonly string[];
  /** Expiry, milliseconds since the epoch. */
  readonly exp: number;
}

const VERSION = 'v1';

/** Cookie name for a (sorted) channel set. */
export function sessionCookieName(channels: readonly string[]): string {
  return `rt_${sha256(channels.join(',')).slice(0, 16)}`;
}

function mac(secret: string, payload: string): Buffer {
  return createHmac('sha256', secret).update(payload).digest();
}

/** Signs a grant with the first secret. */
export function signSession(grant: SessionGrant, secrets: readonly string[]): string {
  const payload = `${VERSION}.${Buffer.from(JSON.stringify({ s: grant.sub, c: grant.channels, e: grant.exp })).toString('base64url')}`;
  return `${payload}.${mac(secrets[0], payload).toString('base64url')}`;
}

/** Verifies a cookie value against every secret (so secrets can rotate); null when invalid or expired. */
export function verifySession(value: string | undefined, secrets: readonly string[], now: number): SessionGrant | null {
  if (!value || value.length > 4096) return null;
  const dot = value.lastIndexOf('.');
  if (dot < 0) return null;
  const payload = value.slice(0, dot);
  // Compare the canonical text: base64 decoding is lenient about the unused low bits of the last character.
  const sig = Buffer.from(value.slice(dot + 1));
  const ok = secrets.some((s) => {
    const want = Buffer.from(mac(s, payload).toString('base64url'));
    return want.length === sig.length && timingSafeEqual(want, sig);
  });
  if (!ok || !payload.startsWith(`${VERSION}.`)) return null;
  try {
    const body = JSON.parse(Buffer.from(payload.slice(VERSION.length + 1), 'base64url').toString('utf8')) as { s: string; c: string[]; e: number };
    if (typeof body.e !== 'number' || body.e <= now || typeof body.s !== 'string' || !Array.isArray(body.c)) return null;
    return { sub: body.s, channels: body.c, exp: body.e };
  } catch {
    return null;
  }
}

/** Parses a Cookie header into a map (first occurrence wins). */
export function parseCookies(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (!header) return out;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const k = part.slice(0, eq).trim();
    if (!out.has(k)) out.set(k, part.slice(eq + 1).trim());
  }
  return out;
}
