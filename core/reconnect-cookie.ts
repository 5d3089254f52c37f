import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';
import { sha256 } from './redis/keys';

/**
 * The reconnect session: what the first redemption of a ticket leaves the browser so that native
 * `EventSource` reconnects (which resend the spent ticket) keep working. It is a signed, short-lived,
 * HttpOnly cookie bound to the identity, the exact channel set of the connection (by a hash: the
 * cookie stays small however long the channel names are) and the ticket it came from (by a hash:
 * only a request presenting that ticket, or none, may use the cookie instead of a ticket). Its name
 * is derived from the channel set, so several streams of one page never overwrite each other's cookie.
 *
 * Lifetimes: each cookie lives `SESSION_TTL_SECONDS` and is renewed on every reconnect, but never past
 * the session's absolute end (`maxExp`), fixed when the ticket was redeemed: `SESSION_MAX_AGE_SECONDS`
 * after the ticket was issued, or the caller's JWT `exp` when that is sooner.
 */
export interface SessionGrant {
  readonly sub: string;
  /** Hash of the sorted channel set this cookie opens ({@link channelSetHash}). */
  readonly set: string;
  /** Hash of the ticket the session came from ({@link ticketTag}). */
  readonly ticket: string;
  /** Expiry of this cookie, milliseconds since the epoch. */
  readonly exp: number;
  /** Absolute end of the session, milliseconds since the epoch: renewals never pass it. */
  readonly maxExp: number;
  /** The user's revocation epoch when the ticket was issued. */
  readonly epoch: number;
  /** True when a trusted backend asked for the ticket (it opens `granted` namespaces). */
  readonly byBackend: boolean;
  /** The ticket's presence `info` (a JSON object of at most 512 bytes of JSON), so sessions from the cookie join with it. */
  readonly info?: object;
}

const VERSION = 'v2';
const NAME_PATTERN = /^rt_[0-9a-f]{16}$/;

/** Short hash of a (sorted) channel set. */
export function channelSetHash(channels: readonly string[]): string {
  return sha256(channels.join(',')).slice(0, 16);
}

/** Cookie name for a (sorted) channel set (`set`: its {@link channelSetHash}, when the caller has it already). */
export function sessionCookieName(channels: readonly string[], set = channelSetHash(channels)): string {
  return `rt_${set}`;
}

/** True for the name of a reconnect cookie. */
export function isSessionCookieName(name: string): boolean {
  return NAME_PATTERN.test(name);
}

/** Short hash binding a session to the ticket it came from (not enough to redeem anything). */
export function ticketTag(ticket: string): string {
  return sha256(`session:${ticket}`).slice(0, 16);
}

/** Each secret's key, made once: an HMAC from a `KeyObject` skips the key's conversion that a string costs every time. */
const secretKeys = new Map<string, KeyObject>();

function mac(secret: string, payload: string): Buffer {
  let key = secretKeys.get(secret);
  if (key === undefined) {
    // A handful of secrets per process (SESSION_SECRETS); bounded all the same.
    if (secretKeys.size >= 16) secretKeys.clear();
    secretKeys.set(secret, (key = createSecretKey(Buffer.from(secret, 'utf8'))));
  }
  return createHmac('sha256', key).update(payload).digest();
}

/** Signs a grant with the first secret. */
export function signSession(grant: SessionGrant, secrets: readonly string[]): string {
  const body: Record<string, string | number | object> = { s: grant.sub, h: grant.set, t: grant.ticket, e: grant.exp, m: grant.maxExp, v: grant.epoch };
  if (grant.byBackend) body.b = 1;
  if (grant.info) body.i = grant.info;
  const payload = `${VERSION}.${Buffer.from(JSON.stringify(body)).toString('base64url')}`;
  return `${payload}.${mac(secrets[0], payload).toString('base64url')}`;
}

/** The signed JSON body of a cookie of `version`; null when the signature or version does not match. */
function signedBody(value: string | undefined, secrets: readonly string[], version: string): Record<string, unknown> | null {
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
  if (!ok || !payload.startsWith(`${version}.`)) return null;
  try {
    const b = JSON.parse(Buffer.from(payload.slice(version.length + 1), 'base64url').toString('utf8')) as unknown;
    return b !== null && typeof b === 'object' && !Array.isArray(b) ? (b as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** Checks the signature against every secret (so secrets can rotate) and decodes; null when invalid. Expiry is not checked. */
export function decodeSession(value: string | undefined, secrets: readonly string[]): SessionGrant | null {
  const b = signedBody(value, secrets, VERSION);
  if (!b) return null;
  const { s, h, t, e, m, v } = b;
  if (typeof s !== 'string' || typeof h !== 'string' || typeof t !== 'string') return null;
  if (typeof e !== 'number' || typeof m !== 'number' || typeof v !== 'number') return null;
  const info = b.i !== null && typeof b.i === 'object' && !Array.isArray(b.i) ? b.i : undefined;
  return { sub: s, set: h, ticket: t, exp: e, maxExp: m, epoch: v, byBackend: b.b === 1, ...(info ? { info } : {}) };
}

/** A cookie of the first format (`v1`: user, channel list, expiry), issued before sessions had an absolute end. */
export interface LegacySession {
  readonly sub: string;
  readonly channels: readonly string[];
  readonly exp: number;
}

/**
 * Verifies a `v1` cookie (so streams open during an upgrade keep reconnecting); null when invalid or
 * expired. It binds no ticket and no absolute end: the caller decides how far to honour it.
 */
export function verifyLegacySession(value: string | undefined, secrets: readonly string[], now: number): LegacySession | null {
  const b = signedBody(value, secrets, 'v1');
  if (!b || typeof b.s !== 'string' || typeof b.e !== 'number' || b.e <= now || !Array.isArray(b.c)) return null;
  const channels = b.c.filter((c): c is string => typeof c === 'string');
  return { sub: b.s, channels, exp: b.e };
}

/** The cookies of a request without a Cookie header (a reconnect storm's SDK clients): one map for all of them. */
const NO_COOKIES: ReadonlyMap<string, string> = new Map();

/** Parses a Cookie header into a map (first occurrence wins). */
export function parseCookies(header: string | undefined): ReadonlyMap<string, string> {
  if (!header) return NO_COOKIES;
  const out = new Map<string, string>();
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const k = part.slice(0, eq).trim();
    if (!out.has(k)) out.set(k, part.slice(eq + 1).trim());
  }
  return out;
}
