import assert from 'node:assert/strict';
import { mkdtemp, rm, truncate } from 'node:fs/promises';
import path from 'node:path';
import { Mailbox } from '../../src/mailbox/mailbox.js';
import { InProcessWakeUpWatcher, ThreadWakeUpWatcher } from '../../src/spm/wake-up-watcher.js';
import { FakeClock, settle } from '../helpers/fake-clock.js';

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

  it('a ring ends the wait at once, as a changed block would, without counting as one', async () => {
    watcher = new ThreadWakeUpWatcher(mailbox.path, mailbox.maxHosts);
    await watcher.waitForChange(5, 2_000);
    const waiting = watcher.waitForChange(10_000, 10_000);
    const rung = performance.now();
    watcher.ring();
    assert.equal(await waiting, true);
    assert.ok(performance.now() - rung < 500, 'the ring was answered late');
    assert.equal(watcher.changes, 1, 'the ring counted as a change of the block');
    watcher.ring();
    assert.equal(await watcher.waitForChange(10_000, 10_000), true, 'a ring between waits is kept for the next');
  });

  it('rejects the wait with the reason when the block cannot be read (a mailbox without one)', async () => {
    await truncate(mailbox.path, 4096);
    watcher = new ThreadWakeUpWatcher(mailbox.path, mailbox.maxHosts);
    await assert.rejects(watcher.waitForChange(5, 2_000), /short read of the wake-up block/);
  });
});

/** The same block read on the SPM's event loop with an injected clock: a ring ends its wait without the clock moving. */
describe('wake-up watcher on the event loop', function () {
  this.timeout(20_000);
  let dir: string;
  let mailbox: Mailbox;

  beforeEach(async () => {
    dir = await mkdtemp(path.join('/var/tmp', 'tideline-wake-test-'));
    await Mailbox.init(path.join(dir, 'mailbox'), { maxHosts: 4 });
    mailbox = await Mailbox.open(path.join(dir, 'mailbox'));
  });
  afterEach(async () => {
    await mailbox.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('a ring ends the wait at once; without one it lasts its time', async () => {
    const clock = new FakeClock();
    const watcher = new InProcessWakeUpWatcher(mailbox, clock);
    assert.equal(await watcher.waitForChange(1_000, 1_000), true, 'the first look is a change');
    let ended: boolean | undefined;
    const waiting = watcher.waitForChange(1_000, 1_000).then((changed) => (ended = changed));
    await settle();
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(ended, undefined, 'the wait ended before its time or a ring');
    watcher.ring();
    assert.equal(await waiting, true);
    assert.equal(watcher.changes, 1);
    const quiet = watcher.waitForChange(1_000, 1_000);
    await new Promise((resolve) => setTimeout(resolve, 20));
    await clock.advance(1_000);
    assert.equal(await quiet, false, 'a wait without a ring or a change');
  });
});
