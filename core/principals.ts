import { ConfigError } from './config';

/**
 * Which IAM callers are trusted backends (`TRUSTED_PRINCIPALS`).
 *
 * HTTP APIs have no resource policies, so any principal whose own IAM policy allows
 * `execute-api:Invoke` on the API reaches the handlers. A trusted backend may publish anywhere and
 * mint tickets for any user, so the handlers check the caller's ARN against an explicit list:
 *
 * - `arn:aws:iam::ACCOUNT:role/[path/]NAME` matches that role and its sessions
 *   (`arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION`, which is what the IAM authorizer reports);
 * - `arn:aws:iam::ACCOUNT:user/[path/]NAME` matches that user.
 *
 * There is no account-wide entry: every trusted backend is named (the stage schema in `lib/errors.ts` accepts the same
 * two forms). An empty list trusts no IAM caller.
 */
export interface TrustedPrincipals {
  /** True when `callerArn` (the IAM authorizer's `userArn`) is trusted. */
  trusts(callerArn: string): boolean;
  readonly entries: readonly string[];
}

const ENTRY = /^arn:(aws[a-z-]*):iam::(\d{12}):(role\/(?:[\w+=,.@-]+\/)*([\w+=,.@-]+)|user\/(?:[\w+=,.@-]+\/)*([\w+=,.@-]+))$/;
const CALLER = /^arn:(aws[a-z-]*):(iam|sts)::(\d{12}):(.+)$/;

interface Rule {
  readonly partition: string;
  readonly account: string;
  readonly kind: 'role' | 'user';
  readonly name: string;
}

/** Parses the comma-separated `TRUSTED_PRINCIPALS`; throws ConfigError naming the first bad entry. */
export function parseTrustedPrincipals(value: string | undefined): TrustedPrincipals {
  const entries = (value ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const rules: Rule[] = entries.map((e) => {
    const m = ENTRY.exec(e);
    if (!m) throw new ConfigError(`Invalid configuration: TRUSTED_PRINCIPALS: "${e}" is not an IAM role or user ARN`);
    const kind = m[3].startsWith('role/') ? 'role' : 'user';
    return { partition: m[1], account: m[2], kind, name: m[4] ?? m[5] ?? '' };
  });
  return {
    entries,
    trusts(callerArn: string): boolean {
      const m = CALLER.exec(callerArn);
      if (!m) return false;
      const [, partition, service, account, resource] = m;
      return rules.some((r) => {
        if (r.partition !== partition || r.account !== account) return false;
        if (r.kind === 'user') return service === 'iam' && resource.startsWith('user/') && resource.split('/').pop() === r.name;
        if (service === 'sts') {
          const parts = resource.split('/');
          return parts[0] === 'assumed-role' && parts[1] === r.name;
        }
        return resource.startsWith('role/') && resource.split('/').pop() === r.name;
      });
    },
  };
}
