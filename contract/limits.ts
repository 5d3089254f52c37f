/**
 * Bounds that the infrastructure checks at synth and the runtime checks at start, so a stage that synthesises also
 * starts. No dependencies (like contract/env.ts).
 */

/**
 * Most events a namespace may keep per channel (`historySize`): a full resume is then at most ten replay pages of the
 * default 1000 events.
 */
export const MAX_HISTORY_SIZE = 10_000;
/**
 * Most bytes one channel's full history may hold: `historySize` × `maxPayloadBytes` (64 MiB; 2048 events of the
 * largest envelope, 32 KB). One channel then cannot take more than a small part of a cache node's memory.
 */
export const MAX_HISTORY_BYTES_PER_CHANNEL = 64 * 1024 * 1024;
