/**
 * Who is asking. `user` comes from a JWT `sub` (or a trusted backend naming a user),
 * `server` from an IAM-signed backend call, `anonymous` from a connection without a ticket.
 */
export type Identity =
  | { readonly kind: 'user'; readonly sub: string }
  | { readonly kind: 'server'; readonly principal: string }
  | { readonly kind: 'anonymous' };

/**
 * A user id as tickets, cookies and POST /revoke accept it: 1-255 characters (Unicode code points), no
 * control characters and no lone surrogates (which UTF-8 cannot carry: the stored id would differ).
 * OpenID Connect allows a `sub` of up to 255 ASCII characters; IdPs that send more than ASCII (`José`)
 * are served too. Redis keys are binary-safe, so a sub is used in keys as it is. The longest (255
 * characters of 4 UTF-8 bytes) keeps the reconnect cookie near 1.6 KB. Tickets are issued only to subs
 * that match, so every user who holds a session can be revoked.
 */
export const SUB_PATTERN = /^[^\p{Cc}\p{Cs}]{1,255}$/u;

/** What {@link SUB_PATTERN} accepts, in words (for error messages). */
export const SUB_RULE = '1-255 characters, no control characters';

export const ANONYMOUS: Identity = { kind: 'anonymous' };

/** A short, log-safe description of an identity. */
export function describeIdentity(identity: Identity): string {
  switch (identity.kind) {
    case 'user':
      return `user:${identity.sub}`;
    case 'server':
      return `server:${identity.principal}`;
    default:
      return 'anonymous';
  }
}
