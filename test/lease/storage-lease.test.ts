import assert from 'node:assert/strict';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { decodeLeaseBlock, LeaseState } from '../../src/lease/lease-block.js';
import { StorageLease, validateTiming, type LeaseTiming } from '../../src/lease/storage-lease.js';
import { DirectBlockFile } from '../../src/mailbox/direct-io.js';
import { BLOCK_BYTES } from '../../src/mailbox/format.js';
import { silentLogger } from '../../src/log/logger.js';
import { systemClock } from '../../src/util/clock.js';
import { FakeClock } from '../helpers/fake-clock.js';

/** Two SPM candidates on one lease file with direct I/O, each with its own file handle, as two hosts would have. */
const FAST: LeaseTiming = { renewMs: 15, ioTimeoutMs: 100, expiryMs: 400, marginMs: 150 };
const HOSTS = 4;

describe('built-in storage lease', function () {
  this.timeout(120_000);
  let dir: string;
  let leaseFile: string;
  const files: DirectBlockFile[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(path.join('/var/tmp', 'tideline-lease-test-'));
    leaseFile = path.join(dir, 'leases');
    await writeFile(leaseFile, '');
    await truncate(leaseFile, HOSTS * BLOCK_BYTES);
  });
  afterEach(async () => {
    for (const file of files.splice(0)) await file.close().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  async function candidate(hostId: number): Promise<StorageLease> {
    const file = await DirectBlockFile.open(leaseFile, HOSTS * BLOCK_BYTES);
    files.push(file);
    return new StorageLease(file, hostId, HOSTS, FAST, systemClock, silentLogger);
  }

  it('never lets two candidates hold it at once over 100 contended rounds', async () => {
    const a = await candidate(1);
    const b = await candidate(2);
    const holders: string[] = [];
    let overlaps = 0;
    const take = async (me: StorageLease, other: StorageLease, name: string) => {
      await me.acquire();
      if (other.held) overlaps += 1;
      holders.push(name);
      await new Promise((resolve) => setTimeout(resolve, 5));
      if (other.held) overlaps += 1;
      await me.release();
    };
    for (let round = 0; round < 100; round += 1) {
      await Promise.all([take(a, b, 'a'), take(b, a, 'b')]);
    }
    assert.equal(overlaps, 0, 'both candidates held the lease at the same time');
    assert.equal(holders.length, 200);
    assert.ok(holders.includes('a') && holders.includes('b'));
  });

  it('is taken over only after a holder that died stopped renewing for the expiry time', async () => {
    const a = await candidate(1);
    const b = await candidate(2);
    await a.acquire();
    let lostAt = 0;
    a.on('lost', () => (lostAt = performance.now()));
    // The holder stops renewing, as a killed process would, without releasing.
    (a as unknown as { state: number }).state = 0;
    const diedAt = performance.now();
    await b.acquire();
    const tookOverAfter = performance.now() - diedAt;
    assert.ok(tookOverAfter >= FAST.expiryMs - FAST.renewMs, `took over after ${tookOverAfter} ms, before the expiry of ${FAST.expiryMs} ms`);
    assert.equal(a.held, false);
    assert.equal(lostAt, 0);
    await b.release();
  });

  it('makes a holder that cannot renew stop acting before anyone else may take over', async () => {
    const a = await candidate(1);
    await a.acquire();
    const file = files[0]!;
    const realWrite = file.write.bind(file);
    file.write = () => new Promise(() => undefined); // storage stops answering this host
    const lost = new Promise<number>((resolve) => a.on('lost', () => resolve(performance.now())));
    const start = performance.now();
    const lostAfter = (await lost) - start;
    assert.equal(a.held, false);
    assert.ok(lostAfter <= FAST.expiryMs - FAST.marginMs + FAST.renewMs + FAST.ioTimeoutMs, `noticed the loss only after ${lostAfter} ms`);
    file.write = realWrite;
  });

  it('a holder stalled past its expiry (SIGSTOP) wakes up without the lease and never writes "holding" again over the new holder', async () => {
    // Two hosts, each with its own clock: during the stall only B's moves.
    const storage = Buffer.alloc(HOSTS * BLOCK_BYTES);
    const memoryFile = {
      read: async (offset: number, length: number) => Buffer.from(storage.subarray(offset, offset + length)),
      write: async (offset: number, data: Uint8Array) => void storage.set(data, offset),
      close: async () => undefined,
    } as unknown as DirectBlockFile;
    const clockA = new FakeClock();
    const clockB = new FakeClock();
    const a = new StorageLease(memoryFile, 1, HOSTS, FAST, clockA, silentLogger);
    const b = new StorageLease(memoryFile, 2, HOSTS, FAST, clockB, silentLogger);
    const both = async (ms: number) => {
      for (let step = 0; step < ms; step += 5) {
        await clockA.advance(5);
        await clockB.advance(5);
      }
    };
    const aHolds = a.acquire();
    await both(FAST.expiryMs * 2);
    await aHolds;
    let lost = false;
    a.on('lost', () => (lost = true));
    let bHolds = false;
    void b.acquire().then(() => (bHolds = true));
    await both(FAST.expiryMs);
    assert.equal(bHolds, false, 'B took the lease from a live holder');

    // A stops; B waits out the expiry and takes over.
    for (let step = 0; step < FAST.expiryMs * 3 && !bHolds; step += 5) await clockB.advance(5);
    assert.equal(bHolds, true, 'B did not take over from a stalled holder');
    await clockA.stall(FAST.expiryMs * 3);
    assert.equal(a.held, false, 'A believes it still holds the lease after the stall');
    assert.equal(lost, true, "A did not report the lease lost");
    await both(FAST.expiryMs);
    assert.equal(a.held, false);
    assert.equal(b.held, true);
    const blockOfA = decodeLeaseBlock(storage.subarray(0, BLOCK_BYTES), 1);
    assert.ok(blockOfA !== 'invalid' && blockOfA?.state === LeaseState.Idle, `A's block says ${JSON.stringify(blockOfA)}: it must have given the lease up on the storage too`);
    const released = Promise.all([b.release(), a.release()]);
    await both(FAST.renewMs * 2); // B's renewal loop sleeps on its clock
    await released;
  });

  it('refuses timings that would let a dead holder be presumed alive or a live one dead', () => {
    assert.throws(() => validateTiming({ renewMs: 1000, ioTimeoutMs: 2000, expiryMs: 3000, marginMs: 2000 }), /lease expiry 3000 ms must be at least/);
    assert.throws(() => validateTiming({ renewMs: 10, ioTimeoutMs: 200, expiryMs: 10_000, marginMs: 100 }), /margin 100 ms must cover one I\/O timeout/);
  });
});
