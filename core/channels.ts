import { CHANNEL_NAME_MAX_LENGTH, CHANNEL_NAMESPACE_MAX_LENGTH, MAX_CHANNEL_LENGTH } from '../contract/limits';
import type { NamespacePolicy, Namespaces } from './config';
import { RealtimeError } from './errors';
import type { Identity } from './identity';

/**
 * Channel names are `namespace:name`: a namespace from the config (lowercase, 1-32 chars)
 * and a name of 1-128 characters from `A-Z a-z 0-9 _ . - = @ |`.
 */
export const CHANNEL_PATTERN = new RegExp(`^([a-z][a-z0-9-]{0,${CHANNEL_NAMESPACE_MAX_LENGTH - 1}}):([A-Za-z0-9_.\\-=@|]{1,${CHANNEL_NAME_MAX_LENGTH}})$`);
export { MAX_CHANNEL_LENGTH };

export interface ParsedChannel {
  readonly channel: string;
  readonly namespace: string;
  readonly name: string;
  readonly policy: NamespacePolicy;
}

/** Validates a channel name against the grammar and the configured namespaces. */
export function parseChannel(channel: unknown, namespaces: Namespaces): ParsedChannel {
  if (typeof channel !== 'string' || channel.length === 0) {
    throw new RealtimeError('invalid_channel', 'A channel must be a non-empty string "namespace:name".');
  }
  const shown = channel.length > 64 ? `${channel.slice(0, 64)}…` : channel;
  const m = channel.length <= MAX_CHANNEL_LENGTH ? CHANNEL_PATTERN.exec(channel) : null;
  if (!m) {
    throw new RealtimeError(
      'invalid_channel',
      `Channel ${JSON.stringify(shown)} is not "namespace:name" (namespace: a-z 0-9 -, up to 32; name: A-Z a-z 0-9 _ . - = @ |, up to 128).`,
    );
  }
  const policy = Object.prototype.hasOwnProperty.call(namespaces, m[1]) ? namespaces[m[1]] : undefined;
  if (!policy) {
    throw new RealtimeError('invalid_channel', `Channel ${JSON.stringify(shown)} names unknown namespace "${m[1]}" (the namespaces are in the deployment's NAMESPACES_JSON).`);
  }
  return { channel, namespace: m[1], name: m[2], policy };
}

/**
 * Parses a channel list (an array, or the comma-separated `channels` query parameter):
 * deduplicated, sorted, at least one and at most `max`.
 */
export function parseChannelList(input: unknown, namespaces: Namespaces, max: number): ParsedChannel[] {
  let list: unknown[];
  if (typeof input === 'string') list = input.split(',').filter((s) => s.length > 0);
  else if (Array.isArray(input)) list = input;
  else throw new RealtimeError('invalid_channel', 'Name at least one channel: `channels` must be a list of "namespace:name".');
  if (list.length === 0) throw new RealtimeError('invalid_channel', 'Name at least one channel.');
  const unique = [...new Set(list.map((c) => (typeof c === 'string' ? c : String(c))))];
  if (unique.length > max) throw new RealtimeError('too_many_channels', `At most ${max} channels per ticket or connection; got ${unique.length}.`);
  for (const c of list) if (typeof c !== 'string') throw new RealtimeError('invalid_channel', 'Channel names must be strings.');
  return unique.sort().map((c) => parseChannel(c, namespaces));
}

/**
 * What a ticket, reconnect cookie or WebSocket connection grants: its channels, and whether a trusted
 * backend (an IAM-signed caller naming the user) chose them. Only a backend's grant opens channels of
 * a `granted` namespace: the backend checked membership before asking for the ticket.
 */
export interface ChannelGrant {
  readonly channels: readonly string[];
  /** True when a trusted backend minted the ticket this grant comes from. */
  readonly byBackend: boolean;
}

/**
 * True when `identity` may subscribe to `ch` under its namespace policy. `granted` channels need
 * `grant`: a backend's grant that names the channel (servers themselves always may).
 */
export function maySubscribe(identity: Identity, ch: ParsedChannel, grant?: ChannelGrant): boolean {
  switch (ch.policy.subscribe) {
    case 'public':
      return true;
    case 'authenticated':
      return identity.kind !== 'anonymous';
    case 'owner':
      return identity.kind === 'server' || (identity.kind === 'user' && identity.sub === ch.name);
    case 'granted':
      return identity.kind === 'server' || (identity.kind === 'user' && grant !== undefined && grant.byBackend && grant.channels.includes(ch.channel));
  }
}

/**
 * True when `identity` may publish to `ch`: servers always; users where the namespace allows and
 * they may subscribe (for a `granted` namespace: with `grant` naming the channel).
 */
export function mayPublish(identity: Identity, ch: ParsedChannel, grant?: ChannelGrant): boolean {
  if (identity.kind === 'server') return true;
  if (identity.kind === 'anonymous') return false;
  return ch.policy.publish === 'authenticated' && maySubscribe(identity, ch, grant);
}
