import type { Node } from 'constructs';
import { type RealtimeStageConfig, StageConfigSchema } from '../lib/stage-config';

/** The stage built when `-c stage=...` is not given. */
export const DEFAULT_STAGE = 'dev';

/** A stage config that cannot be used; the message is one line naming the bad key. */
export class StageConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StageConfigError';
  }
}

/** A parsed stage. */
export interface StageSelection {
  readonly stageName: string;
  readonly config: RealtimeStageConfig;
}

/**
 * Reads `stage` (default {@link DEFAULT_STAGE}) and `stages` from the context (cdk.json, `-c`), and parses that stage.
 * Throws {@link StageConfigError} with one line naming the bad key.
 */
export function readStageConfig(node: Node): StageSelection {
  const stageName = String(node.tryGetContext('stage') ?? DEFAULT_STAGE);
  const stages: unknown = node.tryGetContext('stages');
  if (typeof stages !== 'object' || stages === null || Array.isArray(stages)) {
    throw new StageConfigError('cdk.json context has no "stages" object: add "stages": { "dev": {} } to the context of cdk.json');
  }
  const raw = (stages as Record<string, unknown>)[stageName];
  if (raw === undefined) {
    const known = Object.keys(stages).join(', ') || '(none)';
    throw new StageConfigError(`Unknown stage "${stageName}": cdk.json context "stages" defines ${known}. Pass -c stage=<one of those>, or add "${stageName}" to "stages".`);
  }
  const parsed = StageConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const [first, ...rest] = parsed.error.issues;
    const path = ['stages', stageName, ...first.path.map(String)];
    // An unknown key is named itself, not its parent: it is usually a typo of a known one.
    const unknown = first.code === 'unrecognized_keys' ? first.keys : [];
    const key = [...path, ...unknown.slice(0, 1)].join('.');
    const message = unknown.length > 0 ? 'unknown key (a typo? see docs/DEPLOY.md for the keys)' : first.message;
    const more = rest.length + Math.max(0, unknown.length - 1);
    throw new StageConfigError(`Invalid stage config ${key}: ${message}${more > 0 ? ` (and ${more} more)` : ''}`);
  }
  return { stageName, config: parsed.data };
}
