/**
 * Who is asking. `user` comes from a JWT `sub` (or a trusted backend naming a user),
 * `server` from an IAM-signed backend call, `anonymous` from a connection without a ticket.
 */
export type Identity =
  | { readonly kind: 'user'; readonly sub: string }
  | { readonly kind: 'server'; readonly principal: string }
  | { readonly kind: 'anonymous' };

/** A user id as tickets, cookies and POST /revoke accept it: 1-128 characters. */
export const SUB_PATTERN = /^[A-Za-z0-9_.\-=@|:]{1,128}$/;

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
