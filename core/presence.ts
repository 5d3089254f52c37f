import { CORE_SETTINGS } from '../contract/settings';
import type { ParsedChannel } from './channels';
import { RealtimeError, type ErrorCode } from './errors';

/**
 * Presence (issue 24; docs/DESIGN.md, "Presence"): who is on a channel. The store is `core/redis/presence.ts`; this
 * module holds what every side agrees on: the per-namespace mode, the snapshot's shape, the events and how a
 * snapshot and the events after its position make the membership.
 */

/** A namespace's presence (`presence` in NAMESPACES_JSON). */
export type PresenceMode = 'off' | 'members' | 'count';

export const PRESENCE_JOIN = 'presence.join';
export const PRESENCE_LEAVE = 'presence.leave';
/** Event types a client may not publish in a namespace with presence on: the service's own. */
export const PRESENCE_TYPE_PREFIX = 'presence.';

/** Largest `info` of a member (its JSON, UTF-8), e.g. a display name and an avatar URL. */
export const PRESENCE_INFO_MAX_BYTES = 512;

/** Milliseconds a member whose last connection closed stays a member (a reconnect within it makes no event), by default (`PRESENCE_GRACE_MS`). */
export const PRESENCE_GRACE_MS = CORE_SETTINGS.presenceGraceMs.default;

/** One member: a user (`sub`) with one or more connections (0 while in its grace period). */
export interface PresenceMember {
  readonly sub: string;
  readonly info?: unknown;
  readonly connections: number;
}

/** The members of a channel at `position` (the channel's position when they were read, in the same step). */
export interface PresenceSnapshot {
  /** Members mode: every member. Count mode: none (the store reads their number only). */
  readonly members: readonly PresenceMember[];
  /** Count mode: the number of members (those in grace included), read without the members. */
  readonly count?: number;
  readonly position: number;
}

/** What a `presence.join` / `presence.leave` event carries. */
export interface PresenceEventData {
  readonly sub: string;
  readonly info?: unknown;
}

/**
 * A snapshot as the transports send it (SSE `event: presence` data; `/live` and API Gateway frame `type: "presence"`):
 * `{channel, members, position}`, the position a decimal string like an envelope's id; in count mode
 * `{channel, count, position}` (then `presence.count` events follow).
 */
export function presenceJson(channel: ParsedChannel, snapshot: PresenceSnapshot): string {
  const position = String(snapshot.position);
  if (presenceMode(channel) === 'count') return JSON.stringify({ channel: channel.channel, count: snapshot.count ?? snapshot.members.length, position });
  return JSON.stringify({ channel: channel.channel, members: snapshot.members, position });
}

/** Who may see a channel's presence is who may subscribe to it: a connection subscribed to it, in a namespace with presence on. */
export function assertMaySeePresence(channel: ParsedChannel, subscribed: boolean): void {
  if (!subscribed) throw new RealtimeError('channel_not_granted', `Not subscribed to ${channel.channel}: subscribe first, then ask for its presence.`);
  if (presenceMode(channel) === 'off') throw new RealtimeError('forbidden', `Namespace ${channel.namespace} keeps no presence ("presence" is off).`);
}

export function presenceMode(channel: ParsedChannel): PresenceMode {
  return channel.policy.presence ?? 'off';
}

/**
 * `info` as stored: its JSON, or '' for none. Refused past {@link PRESENCE_INFO_MAX_BYTES} or when not JSON, with
 * `tooLarge` for the first (the store's default, `payload_too_large`; a ticket's `info` is `invalid_info`, 400).
 */
export function encodePresenceInfo(info: unknown, tooLarge: ErrorCode = 'payload_too_large'): string {
  if (info === undefined || info === null) return '';
  let json: string | undefined;
  try {
    json = JSON.stringify(info);
  } catch {
    json = undefined;
  }
  if (json === undefined) throw new RealtimeError('bad_request', 'Presence info must be a JSON value.');
  const bytes = Buffer.byteLength(json);
  if (bytes > PRESENCE_INFO_MAX_BYTES) throw new RealtimeError(tooLarge, `Presence info is ${bytes} bytes of JSON; at most ${PRESENCE_INFO_MAX_BYTES}.`);
  return json;
}

/** The membership of a snapshot: `sub` → info (undefined for none). */
export function membersOf(snapshot: PresenceSnapshot): Map<string, unknown> {
  return new Map(snapshot.members.map((m) => [m.sub, m.info]));
}

/**
 * Applies one event of the channel (taken in order, with an id above the snapshot's position) to a membership; events
 * of other types are ignored.
 */
export function applyPresenceEvent(members: Map<string, unknown>, event: { readonly type: string; readonly data: unknown }): void {
  const data = event.data as PresenceEventData;
  if (event.type === PRESENCE_JOIN) members.set(data.sub, data.info);
  else if (event.type === PRESENCE_LEAVE) members.delete(data.sub);
}
