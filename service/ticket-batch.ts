import { Script, type RedisLike } from '../core/redis/client';

/** GETDEL of each key in one script run: the values in the keys' order, nil where a key was not there (Lua false). */
export const GETDEL_ALL = new Script(`local r = {}
for i = 1, #KEYS do r[i] = redis.call('GETDEL', KEYS[i]) end
return r`);

interface Pending {
  readonly key: string;
  readonly resolve: (v: string | null) => void;
  readonly reject: (e: unknown) => void;
}

/**
 * The GETDELs of a burst of ticket redemptions (a reconnect storm) in one write and one reply. A GETDEL asked for
 * within `windowMs` of the last one sent waits for that window's end and goes with the others asked for meanwhile, in
 * one run of {@link GETDEL_ALL}; the first after a quiet window goes at once, alone. So a task that redeems a ticket now
 * and then pays no wait, and one in a storm sends Redis one command per window instead of one per connect: in the
 * storm case 2.0 → 1.1 writes and 1.6 → 1.1 reads per connect (docs/BENCHMARKS.md, "The storm with peers, and a
 * burst's redemptions in one run").
 *
 * Each key is still GETDEL'd once, by Redis, in order: of two redemptions of one ticket in the same run the first gets
 * the record and the second nil, as with two GETDELs. A failed run fails every redemption in it with its error (each
 * request answers as a failed GETDEL makes it answer). One Redis node only: the keys of a run may hash to any slot.
 */
export class GetdelBatch {
  private queue: Pending[] = [];
  private timer: NodeJS.Timeout | undefined;
  private lastSent = -Infinity;

  /** `now`: a clock in milliseconds (the task's; tests hold it still to make every redemption fall in one window). */
  constructor(
    private readonly redis: RedisLike,
    private readonly windowMs: number,
    private readonly now: () => number,
  ) {}

  getdel(key: string): Promise<string | null> {
    const t = this.now();
    if (this.timer === undefined && !(t - this.lastSent < this.windowMs)) {
      this.lastSent = t;
      return this.redis.getdel(key);
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ key, resolve, reject });
      this.timer ??= setTimeout(() => this.flush(), Math.max(0, Math.min(this.windowMs, this.lastSent + this.windowMs - t)));
    });
  }

  private flush(): void {
    this.timer = undefined;
    const batch = this.queue;
    this.queue = [];
    this.lastSent = this.now();
    if (batch.length === 1) {
      this.redis.getdel(batch[0].key).then(batch[0].resolve, batch[0].reject);
      return;
    }
    GETDEL_ALL.run(this.redis, batch.map((b) => b.key), []).then(
      (values) => {
        const v = values as (string | null)[];
        for (let i = 0; i < batch.length; i++) batch[i].resolve(v[i] ?? null);
      },
      (err) => {
        for (const b of batch) b.reject(err);
      },
    );
  }

  /** `redis` with its GETDEL batched here, every other command its own. */
  client(): RedisLike {
    const r = this.redis;
    return {
      evalsha: (...a) => r.evalsha(...a),
      eval: (...a) => r.eval(...a),
      set: (...a) => r.set(...a),
      get: (k) => r.get(k),
      ping: () => r.ping(),
      getdel: (k) => this.getdel(k),
    };
  }
}
