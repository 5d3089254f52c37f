/** Types for `cluster-key-slot` 1.1.1 (the version ioredis pins; it ships none): the Redis Cluster slot of a key. */
declare module 'cluster-key-slot' {
  /** The slot (0–16383) of `key`, honouring a `{hash tag}` as Redis does. */
  function calculateSlot(key: string | Buffer): number;
  namespace calculateSlot {
    /** The slot all `keys` share, or -1 when they span slots. */
    function generateMulti(keys: (string | Buffer)[]): number;
  }
  export = calculateSlot;
}
