/** Something with bytes queued for its socket. */
export interface Flushable {
  flush(): void;
}

/**
 * Collects the transports with bytes to write and flushes them together: one socket write per
 * transport per window, however many events arrived in it.
 */
export class FlushWindow {
  private dirty: Flushable[] = [];
  private scheduled = false;

  constructor(
    /**
     * Window length in milliseconds (WRITE_DELAY_MS). 0 flushes at the end of the current event-loop
     * turn (events arriving together still share one write). Defaults to 0.
     */
    private readonly delayMs = 0,
  ) {}

  /** Queues `t` for the next flush (call once per window: when its queue goes from empty to not). */
  mark(t: Flushable): void {
    this.dirty.push(t);
    if (this.scheduled) return;
    this.scheduled = true;
    if (this.delayMs > 0) setTimeout(this.flushAll, this.delayMs);
    else setImmediate(this.flushAll);
  }

  private readonly flushAll = (): void => {
    const dirty = this.dirty;
    this.dirty = [];
    this.scheduled = false;
    for (const t of dirty) t.flush();
  };
}
