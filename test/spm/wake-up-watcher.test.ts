import assert from 'node:assert/strict';
import { mkdtemp, rm, truncate } from 'node:fs/promises';
import path from 'node:path';
import { Mailbox } from '../../src/mailbox/mailbox.js';
import { ThreadWakeUpWatcher } from '../../src/spm/wake-up-watcher.js';

/** The wake-up block read on a thread of its own, against a real mailbox file with direct I/O. */
describe('wake-up watcher on its own thread', function () {
  this.timeout(20_000);
  let dir: string;
  let mailbox: Mailbox;
  let watcher: ThreadWakeUpWatcher | undefined;

  beforeEach(async () => {
    // Direct I/O needs a file system that supports it: /var/tmp, as the other mailbox tests.
    dir = await mkdtemp(path.join('/var/tmp', 'tideline-wake-test-'));
    await Mailbox.init(path.join(dir, 'mailbox'), { maxHosts: 4 });
    mailbox = await Mailbox.open(path.join(dir, 'mailbox'));
  });
  afterEach(async () => {
    await watcher?.close();
    watcher = undefined;
    await mailbox.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('counts the first look as a change, then reports only a rewrite of the block, within its interval', async () => {
    watcher = new ThreadWakeUpWatcher(mailbox.path, mailbox.maxHosts);
    assert.equal(await watcher.waitForChange(5, 2_000), true, 'the first look is a change');
    assert.equal(await watcher.waitForChange(5, 200), false, 'nothing was written');
    assert.ok(watcher.reads >= 10, `only ${watcher.reads} reads in 200 ms at a 5 ms interval`);
    const waiting = watcher.waitForChange(5, 5_000);
    const written = performance.now();
    await mailbox.writeWakeUp(2);
    assert.equal(await waiting, true);
    assert.ok(performance.now() - written < 1_000, 'the change was seen late');
    assert.equal(watcher.changes, 2);
    assert.equal(watcher.bytesRead, watcher.reads * 4096);
  });

  it('reads nothing while paused, and sees on the next wait what was written meanwhile', async () => {
    watcher = new ThreadWakeUpWatcher(mailbox.path, mailbox.maxHosts);
    await watcher.waitForChange(5, 2_000);
    watcher.pause();
    await new Promise((resolve) => setTimeout(resolve, 50));
    const readsPaused = watcher.reads;
    await mailbox.writeWakeUp(3);
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.ok(watcher.reads <= readsPaused + 1, `${watcher.reads - readsPaused} reads while paused`);
    assert.equal(await watcher.waitForChange(5, 2_000), true);
  });

  it('rejects the wait with the reason when the block cannot be read (a mailbox without one)', async () => {
    await truncate(mailbox.path, 4096);
    watcher = new ThreadWakeUpWatcher(mailbox.path, mailbox.maxHosts);
    await assert.rejects(watcher.waitForChange(5, 2_000), /short read of the wake-up block/);
  });
});
