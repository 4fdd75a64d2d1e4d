import assert from 'node:assert/strict';
import { execa } from 'execa';
import { LoopPlugin } from '../../plugins/loop/index.js';
import { encodeRing } from '../../src/doorbell/ring-format.js';
import { MailboxExtender } from '../../src/mailbox/mailbox-extender.js';
import { SpmService } from '../../src/spm/spm-service.js';
import { VIRTUAL_SIZE_TAG } from '../../src/spm/validate.js';
import { MiB } from '../../src/util/sizes.js';
import { SpmWorld } from './helpers/spm-world.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A quiet SPM with a doorbell: host 2 rings it over loopback UDP after each
 * request. Its looks at the wake-up block are set 10 s apart (each quiet wait
 * still reads it once a second) and the full scan a minute apart, so an answer
 * within a few hundred milliseconds, counted as woken by the doorbell, can
 * only come from the ring. Real mailbox file (direct I/O), lease, loop domain.
 */
for (const wakeUpThread of [false, true]) describe(`SPM: a quiet SPM woken by a doorbell ring (wake-up block read ${wakeUpThread ? 'on its own thread' : 'on the event loop'})`, function () {
  this.timeout(30_000);
  let world: SpmWorld;
  let plugin: LoopPlugin;
  let spm: SpmService;
  let host: MailboxExtender;

  before(async () => {
    world = await SpmWorld.start({ capacityBytes: 1024 * MiB, doorbell: true, spm: { fastForMs: 200, wakePollMs: 10_000, fullScanMs: 60_000, wakeUpThread } });
    ({ plugin, spm, host } = world);
    await plugin.create('ring-a', 32 * MiB, { [VIRTUAL_SIZE_TAG]: String(1024 * MiB) });
  });
  after(async () => {
    await world?.close();
  });

  it('answers each request at once, woken by the ring, not by its next look', async () => {
    for (const [round, size] of [64, 96, 128].entries()) {
      await sleep(400);
      const before = { ...spm.counters.quietWakeUps };
      const started = performance.now();
      assert.equal(await host.extend('ring-a', size * MiB), size * MiB);
      const elapsedMs = performance.now() - started;
      assert.ok(spm.counters.quietWakeUps.doorbell > before.doorbell, `round ${round}: no scan was woken by the doorbell (${JSON.stringify(spm.counters.quietWakeUps)})`);
      assert.equal(spm.counters.quietWakeUps['full-scan'], before['full-scan'], `round ${round}: a full scan ran`);
      assert.ok(elapsedMs < 300, `round ${round}: the answer took ${Math.round(elapsedMs)} ms; the next look could be up to 1 s away`);
    }
    assert.ok(world.doorbell!.listener.counts.rings >= 3);
  });

  it('a flood of rings makes it scan no more often than while requests flow, and it still serves', async () => {
    await sleep(400);
    const scansBefore = spm.counters.polls;
    const ringsBefore = world.doorbell!.listener.counts.rings;
    const ring = encodeRing({ hostId: 2, mailboxId: world.spmMailbox.header.mailboxId });
    // From another process, as a flood would come: for 400 ms, a ring every few hundred microseconds.
    const flood = `const socket = require('node:dgram').createSocket('udp4'); const ring = Buffer.from('${ring.toString('hex')}', 'hex');
      const until = Date.now() + 400; const next = () => Date.now() < until ? socket.send(ring, ${world.doorbell!.listener.address.port}, '127.0.0.1', () => setImmediate(next)) : socket.close(); next();`;
    const started = performance.now();
    await execa(process.execPath, ['-e', flood], { timeout: 10_000 });
    await sleep(50);
    const elapsedMs = performance.now() - started;
    const scans = spm.counters.polls - scansBefore;
    const rings = world.doorbell!.listener.counts.rings - ringsBefore;
    assert.ok(rings > 500, `only ${rings} rings arrived: not a flood`);
    // One scan per 5 ms at most (the fast interval), and a few more for the ones in flight at the edges.
    assert.ok(scans <= elapsedMs / 5 + 5, `${scans} scans for ${rings} rings in ${Math.round(elapsedMs)} ms`);
    assert.ok(scans >= 10, `${scans} scans for ${rings} rings: the rings did not wake it`);
    assert.equal(await host.extend('ring-a', 160 * MiB), 160 * MiB);
  });
});
