/** How long a revocation is remembered for sessions registered after it arrived, in milliseconds. */
const RECENT_MS = 60_000;

/**
 * Which open sessions belong to which user, with the revocation epoch each was authorised under,
 * so a revocation (POST /revoke, heard on the control channel) ends exactly the sessions that
 * predate it. Revocations of the last minute are remembered: a session authorised just before one,
 * but registered after it arrived, still ends.
 */
export class Revocations {
  private readonly byUser = new Map<string, Map<() => void, number>>();
  private readonly recent = new Map<string, { epoch: number; at: number }>();

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
    const at = Date.now();
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
