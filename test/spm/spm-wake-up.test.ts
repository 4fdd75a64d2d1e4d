import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { initLoopDomain, LoopPlugin } from '../../plugins/loop/index.js';
import { initLeaseVolume, openStorageLease } from '../../src/lease/open-storage-lease.js';
import type { StorageLease } from '../../src/lease/storage-lease.js';
import { silentLogger } from '../../src/log/logger.js';
import { Operation } from '../../src/mailbox/format.js';
import { Mailbox } from '../../src/mailbox/mailbox.js';
import { MailboxExtender } from '../../src/mailbox/mailbox-extender.js';
import { SpmService } from '../../src/spm/spm-service.js';
import { VIRTUAL_SIZE_TAG } from '../../src/spm/validate.js';
import { systemClock } from '../../src/util/clock.js';
import { execaRunner } from '../../src/util/runner.js';
import { MiB } from '../../src/util/sizes.js';

/**
 * A quiet SPM reads one block, the wake-up block, instead of every slot; a
 * host rewrites it after each new request. Real mailbox file (direct I/O),
 * real lease, real loop domain; the full scan is set far away so that only a
 * wake-up can explain a fast answer.
 */
describe('SPM: a quiet SPM woken by the wake-up block', function () {
  this.timeout(30_000);
  let dir: string;
  let plugin: LoopPlugin;
  let lease: StorageLease;
  let spm: SpmService;
  let spmMailbox: Mailbox;
  let hostMailbox: Mailbox;
  let host: MailboxExtender;
  let serving: Promise<unknown>;
  const stop = new AbortController();
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  before(async () => {
    dir = await mkdtemp('/var/tmp/tideline-wake-test-');
    await initLoopDomain(path.join(dir, 'domain'), 1024 * MiB);
    plugin = await LoopPlugin.open(path.join(dir, 'domain'), execaRunner);
    await Mailbox.init(path.join(dir, 'mailbox'), { maxHosts: 8 });
    await initLeaseVolume(path.join(dir, 'leases'), 8);
    spmMailbox = await Mailbox.open(path.join(dir, 'mailbox'));
    hostMailbox = await Mailbox.open(path.join(dir, 'mailbox'));
    lease = await openStorageLease({ path: path.join(dir, 'leases'), hostId: 1, maxHosts: 8, timing: { renewMs: 50, ioTimeoutMs: 300, expiryMs: 2_000, marginMs: 500 }, clock: systemClock, logger: silentLogger });
    await lease.acquire();
    spm = new SpmService({ mailbox: spmMailbox, plugin, lease, clock: systemClock, logger: silentLogger, run: execaRunner, fastForMs: 200, wakePollMs: 10, fullScanMs: 60_000 });
    serving = spm.serve(stop.signal);
    host = await MailboxExtender.open({ mailbox: hostMailbox, hostId: 2, plugin, clock: systemClock, logger: silentLogger, pollMs: 5 });
    for (const volume of ['wake-a', 'wake-b']) await plugin.create(volume, 32 * MiB, { [VIRTUAL_SIZE_TAG]: String(1024 * MiB) });
  });
  after(async () => {
    stop.abort();
    await serving;
    host?.close();
    await lease?.close();
    await spmMailbox?.close();
    await hostMailbox?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('reads only the wake-up block while quiet, and answers a request within milliseconds of it', async () => {
    await sleep(500);
    const scansBefore = spm.counters.polls;
    const readsBefore = spm.counters.wakeUpReads;
    await sleep(1_000);
    assert.equal(spm.counters.polls, scansBefore, 'a quiet SPM scanned every slot');
    assert.ok(spm.counters.wakeUpReads - readsBefore >= 20, `only ${spm.counters.wakeUpReads - readsBefore} wake-up reads in a second`);

    const started = performance.now();
    assert.equal(await host.extend('wake-a', 64 * MiB), 64 * MiB);
    const elapsedMs = performance.now() - started;
    assert.ok(elapsedMs < 1_000, `a woken SPM took ${Math.round(elapsedMs)} ms (without the wake-up it would wait for the 60 s full scan)`);
    assert.ok(spm.counters.wakeUps >= 1);
  });

  it('leaves a slot written without a wake-up to the full scan; the wake-up alone brings it in', async () => {
    await sleep(500);
    await hostMailbox.writeRequests({ hostId: 3, generation: 1, messages: [{ sequence: 1, operation: Operation.Extend, volume: 'wake-b', targetBytes: 48 * MiB, virtualBytes: 0 }, undefined, undefined, undefined, undefined, undefined, undefined, undefined] });
    await sleep(800);
    assert.equal((await plugin.describe('wake-b')).sizeBytes, 32 * MiB, 'served without a wake-up or a full scan');
    await hostMailbox.writeWakeUp(3);
    const deadline = Date.now() + 2_000;
    while ((await plugin.describe('wake-b')).sizeBytes !== 48 * MiB && Date.now() < deadline) await sleep(5);
    assert.equal((await plugin.describe('wake-b')).sizeBytes, 48 * MiB, 'the wake-up did not bring the request in');
    await hostMailbox.writeRequests({ hostId: 3, generation: 2, messages: new Array(8).fill(undefined) });
  });
});
