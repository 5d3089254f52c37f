/** How long a revocation is remembered for sessions registered after it arrived, in milliseconds. */
const RECENT_MS = 60_000;

/**
 * How far a ticket's issue time (the issuer's clock) must be after the control channel's subscription was confirmed
 * (this task's clock) before the task vouches for its user's epoch, and how far inside {@link RECENT_MS} its age must
 * be: the clocks' skew and the issuer's time between taking `issuedAt` and reading the epoch, with room to spare.
 */
export const VOUCH_MARGIN_MS = 5_000;

/**
 * Which open sessions belong to which user, with the revocation epoch each was authorised under,
 * so a revocation (POST /revoke, heard on the control channel) ends exactly the sessions that
 * predate it. Revocations of the last minute are remembered: a session authorised just before one,
 * but registered after it arrived, still ends. And whether this task heard every revocation since a
 * given time ({@link epochFor}).
 */
export class Revocations {
  private readonly byUser = new Map<string, Map<() => void, number>>();
  private readonly recent = new Map<string, { epoch: number; at: number }>();
  /** Since when (this task's clock) the control channel has been subscribed without a break; undefined while it may not be. */
  private controlSince: number | undefined;

  constructor(private readonly now: () => number = Date.now) {}

  /** The control channel's subscription was confirmed just now (SUBSCRIBE answered), and has not broken since. */
  controlUp(): void {
    this.controlSince = this.now();
  }

  /** The subscriber's connection closed: revocations published from now on may not reach this task until it resubscribes. */
  controlDown(): void {
    this.controlSince = undefined;
  }

  /**
   * The current revocation epoch of `sub` as this task knows it, for a ticket issued at `issuedAt` (epoch ms), or
   * undefined when the task cannot vouch for it (the caller then reads the epoch from Redis). It can when the control
   * channel has been subscribed without a break since before the ticket was issued, and the ticket is younger than
   * what is remembered here ({@link RECENT_MS}), both by {@link VOUCH_MARGIN_MS}: every revocation that could make the
   * ticket's epoch stale came after the issuer read it, was published (the REVOKE script sets the epoch and publishes
   * in one step) while this task was subscribed, and is either heard already (remembered here) or on its way, and then
   * ends the session when it arrives, as it ends every open one of the user ({@link track}, {@link heard}).
   * A ticket redeemed on a task that vouches costs one Redis round trip instead of two (docs/DESIGN.md, "A ticket's
   * redemption: one round trip on a task that heard every revocation since the ticket was issued").
   */
  epochFor(sub: string, issuedAt: number): number | undefined {
    const since = this.controlSince;
    const now = this.now();
    if (since === undefined || !(issuedAt - since >= VOUCH_MARGIN_MS) || now - issuedAt > RECENT_MS - VOUCH_MARGIN_MS) return undefined;
    const r = this.recent.get(sub);
    return r !== undefined && now - r.at <= RECENT_MS ? r.epoch : 0;
  }

  /** Registers how to end a session of `sub` authorised under `epoch`; returns its unregistration. */
  track(sub: string, epoch: number, end: () => void): () => void {
    let open = this.byUser.get(sub);
    if (!open) this.byUser.set(sub, (open = new Map()));
    open.set(end, epoch);
    const recent = this.recent.get(sub);
    if (recent && epoch < recent.epoch) queueMicrotask(end);
    return () => {
      open.delete(end);
      if (open.size === 0 && this.byUser.get(sub) === open) this.byUser.delete(sub);
    };
  }

  /** A revocation arrived: remember it for a minute and end the sessions of `sub` older than `epoch`. */
  heard(sub: string, epoch: number): number {
    const at = this.now();
    for (const [s, v] of this.recent) if (at - v.at > RECENT_MS) this.recent.delete(s);
    this.recent.set(sub, { epoch, at });
    return this.revoke(sub, epoch);
  }

  /** Ends the sessions of `sub` whose epoch is below `epoch`; returns how many. */
  revoke(sub: string, epoch: number): number {
    const open = this.byUser.get(sub);
    if (!open) return 0;
    let n = 0;
    for (const [end, e] of [...open]) {
      if (e < epoch) {
        end();
        n++;
      }
    }
    return n;
  }
}
