import { runFifoBatch, type ReceivedItem } from '../../core/fanout-queue';

/**
 * The fan-out worker's FIFO batch rule (`runFifoBatch`, core/fanout-queue.ts): items of one message group (one shard)
 * run one after another in queue order, groups run side by side, and a failed item is reported with every later item
 * of its group (so SQS FIFO redelivers them in order) while the other groups finish. No timing: the order is observed
 * through promises the items themselves resolve.
 */
const item = (id: string, group?: string): ReceivedItem => ({ id, group });

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

test('a failure fails the rest of its group only; earlier items of that group and other groups are done', async () => {
  const ran: string[] = [];
  const failedSeen: string[] = [];
  const batch = [item('a1', 'A'), item('b1', 'B'), item('a2', 'A'), item('b2', 'B'), item('c1', 'C'), item('b3', 'B'), item('a3', 'A')];
  const failed = await runFifoBatch(
    batch,
    async (i) => {
      ran.push(i.id);
      if (i.id === 'b2') throw new Error('post failed');
    },
    (i) => failedSeen.push(i.id),
  );
  expect(failed).toEqual(['b2', 'b3']);
  expect(failedSeen).toEqual(['b2']);
  expect(ran.filter((id) => id.startsWith('a'))).toEqual(['a1', 'a2', 'a3']);
  expect(ran).toContain('c1');
  expect(ran).not.toContain('b3');
});

test('within a group one item at a time, in order; groups side by side', async () => {
  const b1Started = deferred();
  const active = new Map<string, number>();
  let overlapInGroup = false;
  const order: string[] = [];
  const failed = await runFifoBatch([item('a1', 'A'), item('a2', 'A'), item('b1', 'B')], async (i) => {
    const g = i.group!;
    active.set(g, (active.get(g) ?? 0) + 1);
    if (active.get(g)! > 1) overlapInGroup = true;
    order.push(`start ${i.id}`);
    if (i.id === 'b1') b1Started.resolve();
    // a1 finishes only once group B has started: groups run in parallel, or this batch never ends.
    if (i.id === 'a1') await b1Started.promise;
    await Promise.resolve();
    order.push(`end ${i.id}`);
    active.set(g, active.get(g)! - 1);
  });
  expect(failed).toEqual([]);
  expect(overlapInGroup).toBe(false);
  expect(order.indexOf('end a1')).toBeLessThan(order.indexOf('start a2'));
  expect(order.indexOf('start b1')).toBeLessThan(order.indexOf('end a1'));
});

test('items without a group are each their own group (a standard queue, or a record missing the attribute)', async () => {
  const failed = await runFifoBatch([item('x'), item('y'), item('z')], async (i) => {
    if (i.id === 'x') throw new Error('no');
  });
  expect(failed).toEqual(['x']);
});
