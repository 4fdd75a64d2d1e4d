import assert from 'node:assert/strict';
import { truncate } from 'node:fs/promises';
import path from 'node:path';
import { LoopPlugin } from '../../plugins/loop/index.js';
import { Operation, wakeUpOffset } from '../../src/mailbox/format.js';
import { Mailbox } from '../../src/mailbox/mailbox.js';
import { MailboxExtender } from '../../src/mailbox/mailbox-extender.js';
import { SpmService } from '../../src/spm/spm-service.js';
import { VIRTUAL_SIZE_TAG } from '../../src/spm/validate.js';
import { MiB } from '../../src/util/sizes.js';
import { SpmWorld } from './helpers/spm-world.js';
import { pino } from 'pino';

/**
 * A quiet SPM reads one block, the wake-up block, instead of every slot; a
 * host rewrites it after each new request. Real mailbox file (direct I/O),
 * real lease, real loop domain; the full scan is set far away so that only a
 * wake-up can explain a fast answer.
 */
for (const wakeUpThread of [false, true]) describe(`SPM: a quiet SPM woken by the wake-up block (read ${wakeUpThread ? 'on a thread of its own, as the daemon does' : 'on the event loop'})`, function () {
  this.timeout(30_000);
  let world: SpmWorld;
  let plugin: LoopPlugin;
  let spm: SpmService;
  let hostMailbox: Mailbox;
  let host: MailboxExtender;
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  before(async () => {
    world = await SpmWorld.start({ capacityBytes: 1024 * MiB, spm: { fastForMs: 200, wakePollMs: 10, fullScanMs: 60_000, wakeUpThread } });
    ({ plugin, spm, hostMailbox, host } = world);
    for (const volume of ['wake-a', 'wake-b']) await plugin.create(volume, 32 * MiB, { [VIRTUAL_SIZE_TAG]: String(1024 * MiB) });
  });
  after(async () => {
    await world?.close();
  });

  it('reads only the wake-up block while quiet, and answers a request within milliseconds of it', async () => {
    await sleep(500);
    const scansBefore = spm.counters.polls;
    const readsBefore = spm.wakeUpCounts.reads;
    await sleep(1_000);
    assert.equal(spm.counters.polls, scansBefore, 'a quiet SPM scanned every slot');
    assert.ok(spm.wakeUpCounts.reads - readsBefore >= 20, `only ${spm.wakeUpCounts.reads - readsBefore} wake-up reads in a second`);

    const started = performance.now();
    assert.equal(await host.extend('wake-a', 64 * MiB), 64 * MiB);
    const elapsedMs = performance.now() - started;
    assert.ok(elapsedMs < 1_000, `a woken SPM took ${Math.round(elapsedMs)} ms (without the wake-up it would wait for the 60 s full scan)`);
    assert.ok(spm.wakeUpCounts.changes >= 1);
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

describe('SPM: a mailbox without a wake-up block (made by an older tideline)', function () {
  this.timeout(30_000);
  let world: SpmWorld | undefined;
  after(async () => {
    await world?.close();
  });

  for (const wakeUpThread of [false, true]) {
    it(`falls back to scanning every slot and serves as before (wake-up block read ${wakeUpThread ? 'on its own thread' : 'on the event loop'})`, async () => {
      await world?.close();
      const log: Array<{ msg: string }> = [];
      const logger = pino({ level: 'info' }, { write: (line: string) => void log.push(JSON.parse(line) as { msg: string }) });
      world = await SpmWorld.start({ capacityBytes: 1024 * MiB, logger, withoutWakeUpBlock: true, spm: { fastForMs: 200, wakePollMs: 10, pollIdleMs: 20, fullScanMs: 60_000, wakeUpThread } });
      await world.plugin.create('old-a', 32 * MiB, { [VIRTUAL_SIZE_TAG]: String(1024 * MiB) });
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.ok(log.some((entry) => entry.msg === 'no wake-up block in this mailbox; scanning every slot at the idle interval instead'), 'the SPM did not say it fell back');
      const started = performance.now();
      assert.equal(await world.host.extend('old-a', 64 * MiB), 64 * MiB);
      assert.ok(performance.now() - started < 2_000, 'served only by the 60 s full scan');
    });
  }

  it('a version 2 mailbox whose wake-up block cannot be read: the same fallback, said as a storage error', async () => {
    await world?.close();
    const log: Array<{ msg: string; level: number }> = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void log.push(JSON.parse(line) as { msg: string; level: number }) });
    world = await SpmWorld.start({ capacityBytes: 1024 * MiB, logger, spm: { fastForMs: 400, wakePollMs: 10, pollIdleMs: 20, fullScanMs: 60_000, wakeUpThread: true } });
    assert.equal(world.spmMailbox.header.version, 2);
    await truncate(path.join(world.dir, 'mailbox'), wakeUpOffset(8));
    await world.plugin.create('new-a', 32 * MiB, { [VIRTUAL_SIZE_TAG]: String(1024 * MiB) });
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const fellBack = log.find((entry) => entry.msg === 'the wake-up block cannot be read; scanning every slot at the idle interval instead');
    assert.ok(fellBack, 'the SPM did not say it fell back');
    assert.equal(fellBack.level, 50, 'logged below error level');
    assert.ok(!log.some((entry) => entry.msg.startsWith('no wake-up block in this mailbox')), 'a version 2 mailbox was taken for an old one');
    assert.equal(await world.host.extend('new-a', 64 * MiB), 64 * MiB);
  });
});
