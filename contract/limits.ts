/**
 * Limits that the infrastructure and the runtime must agree on, in one dependency-free module (like contract/settings.ts):
 * request limits that `core/` enforces (channel grammar, ticket and cursor patterns) and
 * `lib/` sizes what sits in front of the tasks by (AWS WAF's query string bound on the streaming paths,
 * `lib/load-balancer-waf.ts`), and bounds that the infrastructure checks at synth and the runtime at start, so a stage
 * that synthesises also starts.
 */

/** Longest namespace of a channel name (`namespace:name`): lowercase letters, digits and `-`, starting with a letter. */
export const CHANNEL_NAMESPACE_MAX_LENGTH = 32;
/** Longest name part of a channel name: `A-Z a-z 0-9 _ . - = @ |`. */
export const CHANNEL_NAME_MAX_LENGTH = 128;
/** Longest channel name: namespace, `:`, name. */
export const MAX_CHANNEL_LENGTH = CHANNEL_NAMESPACE_MAX_LENGTH + 1 + CHANNEL_NAME_MAX_LENGTH;
/** Random bytes of a ticket; it travels as their base64url, {@link TICKET_LENGTH} characters. */
export const TICKET_BYTES = 32;
/** Characters of a ticket (`?ticket=`): base64url of {@link TICKET_BYTES} bytes, unpadded. */
export const TICKET_LENGTH = Math.ceil((TICKET_BYTES * 4) / 3);
/** Most channels one ticket or connection may name: the upper bound of MAX_CHANNELS_PER_CONNECTION (`CORE_SETTINGS.maxChannelsPerConnection.max`; connection-cursor.test holds them equal). */
export const MAX_CHANNELS_PER_CONNECTION = 64;
/** Base-36 digits of the largest safe integer (2^53 − 1): the longest field of a connection cursor. */
const MAX_CURSOR_FIELD = 11;
/**
 * Longest connection cursor over `channels` channels (`Last-Event-ID`, `lastEventId`, the long poll's `cursor`;
 * `core/cursor.ts`): `p1.`, an anchor, and one field per channel. A plain decimal (an event id, or a WebSocket
 * `since`) is 16 digits at most, shorter than any.
 */
export const cursorMaxLength = (channels: number): number => 'p1'.length + 1 + MAX_CURSOR_FIELD + channels * (1 + MAX_CURSOR_FIELD);
/** Longest connection cursor at {@link MAX_CHANNELS_PER_CONNECTION} channels: 782 characters. */
export const MAX_CURSOR_LENGTH = cursorMaxLength(MAX_CHANNELS_PER_CONNECTION);

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
