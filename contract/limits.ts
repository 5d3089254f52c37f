/**
 * Request limits of the runtime, in one dependency-free module: `core/` enforces them (channel grammar, ticket and
 * cursor patterns, channels per connection) and `lib/` sizes what sits in front of the tasks by them (AWS WAF's query
 * string bound on the streaming paths, `lib/load-balancer-waf.ts`).
 */

/** Longest namespace of a channel name (`namespace:name`): lowercase letters, digits and `-`, starting with a letter. */
export const CHANNEL_NAMESPACE_MAX_LENGTH = 32;
/** Longest name part of a channel name: `A-Z a-z 0-9 _ . - = @ |`. */
export const CHANNEL_NAME_MAX_LENGTH = 128;
/** Longest channel name: namespace, `:`, name. */
export const MAX_CHANNEL_LENGTH = CHANNEL_NAMESPACE_MAX_LENGTH + 1 + CHANNEL_NAME_MAX_LENGTH;
/** Channels one ticket or connection may name unless `MAX_CHANNELS_PER_CONNECTION` says otherwise. */
export const DEFAULT_MAX_CHANNELS_PER_CONNECTION = 16;
/** Random bytes of a ticket; it travels as their base64url, {@link TICKET_LENGTH} characters. */
export const TICKET_BYTES = 32;
/** Characters of a ticket (`?ticket=`): base64url of {@link TICKET_BYTES} bytes, unpadded. */
export const TICKET_LENGTH = Math.ceil((TICKET_BYTES * 4) / 3);
/** Digits of a cursor (`Last-Event-ID`, `lastEventId`, `since`, `cursor`): a decimal event id. */
export const MAX_CURSOR_DIGITS = 16;
