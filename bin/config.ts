import type { Node } from 'constructs';
import { parseStageConfig, type RealtimeStageConfig, StageConfigError } from '../lib/stage-config';

/** The stage built when `-c stage=...` is not given. */
export const DEFAULT_STAGE = 'dev';

export { StageConfigError };

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
  return { stageName, config: parseStageConfig(stageName, raw) };
}
