import { createPresenceSweeper } from './handlers/presence-sweeper';
import { FanoutRuntime } from './shared/fanout-runtime';
import { environmentRuntime } from './shared/runtime';

/** The Lambda entry of the presence sweeper (EventBridge Scheduler, every minute), configured from the environment at cold start. */
export const handler = createPresenceSweeper(environmentRuntime(FanoutRuntime));
