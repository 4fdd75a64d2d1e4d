import assert from 'node:assert/strict';
import { MESSAGES_PER_SLOT, ReplyStatus, type Reply, type Slot } from '../../src/mailbox/format.js';
import { ReplyWriter } from '../../src/spm/reply-writer.js';

function slot(hostId: number, generation: number, sequence?: number): Slot<Reply> {
  const messages = new Array<Reply | undefined>(MESSAGES_PER_SLOT).fill(undefined);
  if (sequence !== undefined) messages[0] = { sequence, status: ReplyStatus.Ok, resultBytes: sequence };
  return { hostId, generation, messages };
}

/** A storage whose writes finish when the test says so. */
class HeldWrites {
  readonly writes: Array<Array<Slot<Reply>>> = [];
  private release: Array<(error?: Error) => void> = [];
  write = (slots: Array<Slot<Reply>>): Promise<void> => {
    this.writes.push(slots);
    return new Promise((resolve, reject) => this.release.push((error) => (error ? reject(error) : resolve())));
  };
  finishNext(error?: Error): void {
    this.release.shift()!(error);
  }
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('reply writer (group commit of reply slots)', () => {
  let held: HeldWrites;
  let writer: ReplyWriter;
  let leaseHeld: boolean;

  beforeEach(() => {
    held = new HeldWrites();
    leaseHeld = true;
    writer = new ReplyWriter(held.write, () => leaseHeld);
    for (let hostId = 1; hostId <= 6; hostId += 1) writer.known(slot(hostId, 7));
  });

  it('writes the first served host at once, and those served meanwhile together in one range write', async () => {
    writer.queue(slot(2, 8, 100));
    await tick();
    assert.deepEqual(held.writes.map((range) => range.map((entry) => entry.hostId)), [[2]]);
    writer.queue(slot(5, 8, 200));
    writer.queue(slot(3, 8, 300));
    await tick();
    assert.equal(held.writes.length, 1, 'a second write started before the first finished');
    held.finishNext();
    await tick();
    assert.deepEqual(held.writes[1]!.map((entry) => entry.hostId), [3, 4, 5]);
    // Host 4 was not served: written exactly as it was last written.
    assert.deepEqual(held.writes[1]![1], slot(4, 7));
    assert.equal(held.writes[1]![0]!.messages[0]!.sequence, 300);
    held.finishNext();
    await writer.settled();
  });

  it('writes what a slot held when it was queued, not what the SPM changed in it afterwards', async () => {
    const served = slot(1, 8, 10);
    writer.queue(served);
    served.messages[0] = { sequence: 11, status: ReplyStatus.Ok, resultBytes: 0 };
    await tick();
    assert.equal(held.writes[0]![0]!.messages[0]!.sequence, 10);
    held.finishNext();
    await writer.settled();
  });

  it('fills a range with the newest copy written of each host it was not asked to write', async () => {
    writer.queue(slot(4, 8, 1));
    await tick();
    held.finishNext();
    await writer.settled();
    writer.queue(slot(1, 8, 2));
    writer.queue(slot(3, 8, 3));
    writer.queue(slot(5, 8, 4));
    await tick();
    held.finishNext();
    await tick();
    assert.deepEqual(held.writes.map((range) => range.map((entry) => entry.hostId)), [[4], [1], [3, 4, 5]]);
    assert.deepEqual(held.writes[2]![1], slot(4, 8, 1));
    held.finishNext();
    await writer.settled();
  });

  it('writes nothing once the lease is gone (a former SPM writes no reply)', async () => {
    leaseHeld = false;
    writer.queue(slot(2, 8, 1));
    await writer.settled();
    assert.equal(held.writes.length, 0);
  });

  it('hands a failed write to the next settled() once, and drops what was queued behind it (the hosts resend)', async () => {
    writer.queue(slot(2, 8, 1));
    await tick();
    writer.queue(slot(3, 8, 2));
    held.finishNext(new Error('EIO'));
    await assert.rejects(writer.settled(), /EIO/);
    assert.equal(held.writes.length, 1, 'the slot queued behind the failed write was written anyway');
    await writer.settled();
  });

  it('refuses a host whose reply slot was never read', () => {
    assert.throws(() => writer.queue(slot(9, 1, 1)), /no reply slot of host 9/);
  });
});
