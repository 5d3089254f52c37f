/**
 * The client reporter's wire contract (`POST /client-metrics`): the upper bounds in milliseconds of the latency
 * histogram's buckets. The client SDK keeps its own copy (`LATENCY_BUCKETS`, a package without dependencies); a
 * test holds the two equal.
 */
export const LATENCY_BUCKETS_MS: readonly number[] = [10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000];
