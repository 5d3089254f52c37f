import { ConfigError } from '../../core/config';
import { parseTrustedPrincipals } from '../../core/principals';

describe('TRUSTED_PRINCIPALS', () => {
  const t = parseTrustedPrincipals('arn:aws:iam::111122223333:role/service/backend, arn:aws:iam::111122223333:user/deployer');

  it('a role matches its own ARN and its assumed-role sessions, not other roles', () => {
    expect(t.trusts('arn:aws:sts::111122223333:assumed-role/backend/i-0abc')).toBe(true);
    expect(t.trusts('arn:aws:iam::111122223333:role/backend')).toBe(true);
    expect(t.trusts('arn:aws:sts::111122223333:assumed-role/backend-evil/s')).toBe(false);
    expect(t.trusts('arn:aws:sts::999999999999:assumed-role/backend/s')).toBe(false);
  });

  it('a user matches only that user', () => {
    expect(t.trusts('arn:aws:iam::111122223333:user/deployer')).toBe(true);
    expect(t.trusts('arn:aws:iam::111122223333:user/intern')).toBe(false);
    expect(t.trusts('arn:aws:sts::111122223333:assumed-role/deployer/s')).toBe(false);
  });

  it('an empty list trusts nobody; garbage callers are never trusted', () => {
    expect(parseTrustedPrincipals(undefined).trusts('arn:aws:iam::111122223333:user/deployer')).toBe(false);
    expect(parseTrustedPrincipals('').entries).toEqual([]);
    expect(t.trusts('not-an-arn')).toBe(false);
  });

  it('a bad entry is a one-line config error naming it', () => {
    expect(() => parseTrustedPrincipals('arn:aws:iam::111122223333:group/admins')).toThrow(ConfigError);
    expect(() => parseTrustedPrincipals('*')).toThrow(/TRUSTED_PRINCIPALS: "\*"/);
    expect(() => parseTrustedPrincipals('arn:aws:iam::444455556666:root')).toThrow(/not an IAM role or user ARN/);
  });
});
