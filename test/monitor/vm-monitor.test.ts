import assert from 'node:assert/strict';
import { HELD_BACK_POLL_MS, NO_SPACE_RETRY_DELAY_MS, VmMonitor } from '../../src/monitor/vm-monitor.js';
import type { PolicySettings } from '../../src/monitor/policy.js';
import { silentLogger } from '../../src/log/logger.js';
import { MiB } from '../../src/util/sizes.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { FakeStorage, FakeVm } from '../helpers/fake-vm.js';
import { DomainFullError } from '../../plugins/errors.js';

const POLICY: PolicySettings = { chunkBytes: 256 * MiB, freeTargetBytes: 128 * MiB, extentBytes: MiB, adaptive: false, adaptiveMaxChunkBytes: 4096 * MiB };
const POLL_MS = 2_000;
const RETRY_MS = 5_000;

function setup(options: { volumeBytes?: number; capBytes?: number; drives?: string[] } = {}) {
  const clock = new FakeClock();
  const vm = new FakeVm();
  const storage = new FakeStorage(clock);
  const drives = (options.drives ?? ['vda']).map((drive) => {
    const volume = `vm1-${drive}`;
    storage.sizes.set(volume, options.volumeBytes ?? 512 * MiB);
    vm.highWater.set(drive, 0);
    return { config: { drive, volume, capBytes: options.capBytes ?? 4096 * MiB, policy: POLICY }, volumeBytes: options.volumeBytes ?? 512 * MiB };
  });
  const monitor = new VmMonitor({ vm: 'vm1', drives, clock, extender: storage, control: vm, logger: silentLogger, pollIntervalMs: POLL_MS, retryDelayMs: RETRY_MS });
  const events: string[] = [];
  monitor.on('extended', (event) => events.push(`extended ${event.drive} ${event.toBytes / MiB}`));
  monitor.on('paused', () => events.push('paused'));
  monitor.on('resumed', () => events.push('resumed'));
  monitor.on('extension-failed', (event) => events.push(`failed ${event.code}`));
  return { clock, vm, storage, monitor, events };
}

/** What QEMU does when a write hits the end of a drive with werror=stop. */
function hitEnd(world: ReturnType<typeof setup>, drive = 'vda') {
  world.vm.runStateValue = 'io-error';
  world.vm.noSpace.add(drive);
  world.monitor.handle({ type: 'io-error', drive, noSpace: true, action: 'stop' });
  world.monitor.handle({ type: 'stopped' });
}

describe('VmMonitor', () => {
  it('arms the write threshold free-target below the end of the volume at start', async () => {
    const world = setup();
    await world.monitor.start();
    assert.equal(world.vm.thresholds.get('vda'), 384 * MiB);
    assert.deepEqual(world.storage.requests, []);
    assert.equal(world.monitor.status().drives[0]!.phase, 'ok');
    world.monitor.stop();
  });

  it("arms a VM in QEMU's prelaunch (-S: its block layer takes writes), but waits while libvirt is still starting it", async () => {
    const prelaunch = setup();
    prelaunch.vm.runStateValue = 'prelaunch';
    await prelaunch.monitor.start();
    assert.equal(prelaunch.vm.thresholds.get('vda'), 384 * MiB);
    prelaunch.monitor.stop();

    const starting = setup();
    starting.vm.runStateValue = 'starting';
    await starting.monitor.start();
    assert.equal(starting.vm.thresholds.get('vda'), undefined, 'nothing asked of a VM libvirt is still starting');
    starting.vm.runStateValue = 'running';
    await starting.clock.advance(1_000);
    assert.equal(starting.vm.thresholds.get('vda'), 384 * MiB, 'armed at the next look, a second later');
    starting.monitor.stop();
  });

  it('extends at once when the image already reaches past the threshold at start', async () => {
    const world = setup();
    world.vm.highWater.set('vda', 500 * MiB);
    await world.monitor.start();
    await world.clock.advance(0);
    assert.deepEqual(world.storage.requests, [{ volume: 'vm1-vda', targetBytes: 768 * MiB }]);
    assert.equal(world.vm.thresholds.get('vda'), 640 * MiB);
    world.monitor.stop();
  });

  it('on a threshold event extends by one chunk to an absolute size, refreshes, and re-arms higher', async () => {
    const world = setup();
    await world.monitor.start();
    world.vm.highWater.set('vda', 400 * MiB);
    world.monitor.handle({ type: 'threshold', drive: 'vda', highWaterAtLeast: 400 * MiB });
    await world.clock.advance(0);
    assert.deepEqual(world.storage.requests, [{ volume: 'vm1-vda', targetBytes: 768 * MiB }]);
    assert.ok(world.storage.refreshes >= 1);
    assert.equal(world.vm.thresholds.get('vda'), 640 * MiB);
    const drive = world.monitor.status().drives[0]!;
    assert.equal(drive.volumeBytes, 768 * MiB);
    assert.equal(drive.extensions, 1);
    assert.deepEqual(world.events, ['extended vda 768']);
    world.monitor.stop();
  });

  /** A VM whose threshold fired once, and whose threshold changes libvirt now holds back until `release`. */
  async function crossedWithThresholdsHeld() {
    const world = setup();
    await world.monitor.start();
    let release!: () => void;
    world.vm.thresholdsHeld = new Promise((resolve) => (release = resolve));
    world.vm.highWater.set('vda', 400 * MiB);
    world.monitor.handle({ type: 'threshold', drive: 'vda', highWaterAtLeast: 400 * MiB });
    await world.clock.advance(0);
    return { world, release };
  }

  it('goes on extending from what the safety poll sees while a threshold change is held back (libvirt, outgoing migration)', async () => {
    const { world, release } = await crossedWithThresholdsHeld();
    assert.deepEqual(world.storage.requests, [{ volume: 'vm1-vda', targetBytes: 768 * MiB }]);
    // The re-arm at 640 MiB hangs; the guest writes on past it.
    world.vm.highWater.set('vda', 700 * MiB);
    await world.clock.advance(POLL_MS);
    assert.deepEqual(world.storage.requests.map((request) => request.targetBytes / MiB), [768, 1024], 'the poll found the high water and extended without a threshold');
    assert.equal(world.vm.thresholds.get('vda'), 384 * MiB, 'no threshold change got through yet');
    release();
    world.vm.thresholdsHeld = undefined;
    await world.clock.advance(0);
    await world.clock.advance(0);
    assert.equal(world.vm.thresholds.get('vda'), 896 * MiB, 'once released, the threshold ends where the volume now needs it');
    world.monitor.stop();
  });

  it('polls every second while a threshold change is held back, and at its own interval again once it went through', async () => {
    const { world, release } = await crossedWithThresholdsHeld();
    world.vm.highWater.set('vda', 700 * MiB);
    await world.clock.advance(HELD_BACK_POLL_MS);
    assert.deepEqual(world.storage.requests.map((request) => request.targetBytes / MiB), [768, 1024], 'the held-back poll came after one second');
    release();
    world.vm.thresholdsHeld = undefined;
    await world.clock.advance(HELD_BACK_POLL_MS);
    world.vm.highWater.set('vda', 950 * MiB);
    await world.clock.advance(HELD_BACK_POLL_MS);
    assert.equal(world.storage.requests.length, 2, 'with the threshold through, no poll a second later');
    await world.clock.advance(POLL_MS);
    assert.equal(world.storage.requests.length, 3, 'the next poll at its own interval');
    world.monitor.stop();
  });

  it('coalesces threshold events that arrive while an extension is in flight into one extension', async () => {
    const world = setup();
    world.storage.delayMs = 1_000;
    await world.monitor.start();
    world.vm.highWater.set('vda', 400 * MiB);
    for (let index = 0; index < 5; index += 1) world.monitor.handle({ type: 'threshold', drive: 'vda', highWaterAtLeast: 400 * MiB });
    await world.clock.advance(0);
    assert.equal(world.monitor.status().drives[0]!.phase, 'extending');
    await world.clock.advance(1_000);
    assert.equal(world.storage.requests.length, 1);
    world.monitor.stop();
  });

  it('extends and resumes a VM that paused because a write found no space', async () => {
    const world = setup();
    world.storage.delayMs = 300;
    await world.monitor.start();
    world.vm.highWater.set('vda', 512 * MiB);
    hitEnd(world);
    await world.clock.advance(0);
    assert.equal(world.monitor.status().pausedForNoSpace, true);
    assert.equal(world.vm.resumes, 0, 'resumed before the volume grew');
    await world.clock.advance(300);
    assert.equal(world.vm.resumes, 1);
    assert.deepEqual(world.events, ['paused', 'extended vda 768', 'resumed']);
    const status = world.monitor.status();
    assert.equal(status.pausedForNoSpace, false);
    assert.equal(status.pauses, 1);
    assert.equal(status.lastResumeMs, 300);
    world.monitor.stop();
  });

  it('never resumes a VM paused by someone else, even after extending', async () => {
    const world = setup();
    await world.monitor.start();
    world.vm.runStateValue = 'paused';
    world.monitor.handle({ type: 'stopped' });
    world.vm.highWater.set('vda', 450 * MiB);
    world.monitor.handle({ type: 'threshold', drive: 'vda', highWaterAtLeast: 450 * MiB });
    await world.clock.advance(10 * POLL_MS);
    assert.equal(world.storage.requests.length, 1, 'the extension itself is still wanted');
    assert.equal(world.vm.resumes, 0);
    assert.equal(world.monitor.status().pauses, 0);
    world.monitor.stop();
  });

  it('leaves a VM paused by an I/O error that is not lack of space to its administrator', async () => {
    const world = setup();
    await world.monitor.start();
    world.vm.runStateValue = 'io-error';
    world.monitor.handle({ type: 'io-error', drive: 'vda', noSpace: false, action: 'stop', reason: 'Input/output error' });
    await world.clock.advance(5 * POLL_MS);
    assert.equal(world.vm.resumes, 0);
    assert.deepEqual(world.storage.requests, []);
    world.monitor.stop();
  });

  it('does not resume when the pause ends by another hand while it extends', async () => {
    const world = setup();
    world.storage.delayMs = 1_000;
    await world.monitor.start();
    world.vm.highWater.set('vda', 512 * MiB);
    hitEnd(world);
    await world.clock.advance(100);
    world.vm.runStateValue = 'running';
    world.monitor.handle({ type: 'resumed' });
    await world.clock.advance(1_000);
    assert.equal(world.vm.resumes, 0);
    assert.equal(world.monitor.status().pausedForNoSpace, false);
    world.monitor.stop();
  });

  it('keeps the VM paused with cap-reached when the volume cannot grow any more', async () => {
    const world = setup({ capBytes: 512 * MiB });
    await world.monitor.start();
    world.vm.highWater.set('vda', 512 * MiB);
    hitEnd(world);
    await world.clock.advance(3 * RETRY_MS);
    assert.equal(world.vm.resumes, 0);
    assert.deepEqual(world.storage.requests, []);
    const drive = world.monitor.status().drives[0]!;
    assert.equal(drive.phase, 'error');
    assert.equal(drive.error?.code, 'cap-reached');
    assert.match(drive.error!.message, /drive vda of vm1 \(volume vm1-vda\) is at its cap of 536870912 bytes/);
    assert.equal(world.monitor.status().pausedForNoSpace, true);
    world.monitor.stop();
  });

  it('grows only up to the cap, never past it', async () => {
    const world = setup({ capBytes: 600 * MiB });
    await world.monitor.start();
    world.vm.highWater.set('vda', 450 * MiB);
    world.monitor.handle({ type: 'threshold', drive: 'vda', highWaterAtLeast: 450 * MiB });
    await world.clock.advance(0);
    assert.deepEqual(world.storage.requests, [{ volume: 'vm1-vda', targetBytes: 600 * MiB }]);
    world.monitor.stop();
  });

  it('keeps a refused VM paused, retries after the delay, and resumes once the storage has room', async () => {
    const world = setup();
    world.storage.failures.push(new DomainFullError('vm1-vda', 'vg0', 256 * MiB, 0));
    await world.monitor.start();
    world.vm.highWater.set('vda', 512 * MiB);
    hitEnd(world);
    await world.clock.advance(0);
    let drive = world.monitor.status().drives[0]!;
    assert.equal(drive.error?.code, 'domain-full');
    assert.equal(drive.phase, 'error');
    assert.equal(world.vm.resumes, 0);
    await world.clock.advance(RETRY_MS + POLL_MS);
    drive = world.monitor.status().drives[0]!;
    assert.equal(drive.error, null);
    assert.equal(world.vm.resumes, 1);
    assert.deepEqual(world.events, ['paused', 'failed domain-full', 'extended vda 768', 'resumed']);
    world.monitor.stop();
  });

  it('retries a paused VM\'s refused extension every second, when it is due rather than at the next poll; a running VM\'s after the full delay', async () => {
    const world = setup();
    const full = () => new DomainFullError('vm1-vda', 'vg0', 256 * MiB, 0);
    world.storage.failures.push(full(), full());
    await world.monitor.start();
    world.vm.highWater.set('vda', 512 * MiB);
    hitEnd(world);
    await world.clock.advance(0);
    assert.equal(world.storage.requests.length, 1);
    await world.clock.advance(NO_SPACE_RETRY_DELAY_MS - 1);
    assert.equal(world.storage.requests.length, 1, 'not before it is due');
    await world.clock.advance(1);
    assert.equal(world.storage.requests.length, 2, 'a second after the refusal, though the next poll is later');
    await world.clock.advance(NO_SPACE_RETRY_DELAY_MS);
    assert.equal(world.storage.requests.length, 3);
    assert.equal(world.vm.resumes, 1, 'resumed once space came back');
    world.monitor.stop();

    const running = setup();
    running.storage.failures.push(new DomainFullError('vm1-vda', 'vg0', 256 * MiB, 0));
    await running.monitor.start();
    running.vm.highWater.set('vda', 450 * MiB);
    running.monitor.handle({ type: 'threshold', drive: 'vda', highWaterAtLeast: 450 * MiB });
    await running.clock.advance(0);
    assert.equal(running.storage.requests.length, 1);
    await running.clock.advance(RETRY_MS - 1);
    assert.equal(running.storage.requests.length, 1, 'a running VM waits the whole retry delay');
    await running.clock.advance(1);
    assert.equal(running.storage.requests.length, 2, 'and is retried when it is due, not at the poll after (every 2 s here)');
    running.monitor.stop();
  });

  it('reports an extension that hangs as a timeout instead of waiting forever', async () => {
    const world = setup();
    world.storage.delayMs = 10 * 60_000;
    await world.monitor.start();
    world.vm.highWater.set('vda', 450 * MiB);
    world.monitor.handle({ type: 'threshold', drive: 'vda', highWaterAtLeast: 450 * MiB });
    await world.clock.advance(60_000);
    assert.equal(world.monitor.status().drives[0]!.error?.code, 'extension-timeout');
    world.monitor.stop();
  });

  it('catches a lost threshold event with the safety poll', async () => {
    const world = setup();
    await world.monitor.start();
    world.vm.highWater.set('vda', 420 * MiB);
    assert.deepEqual(world.storage.requests, []);
    await world.clock.advance(POLL_MS);
    assert.deepEqual(world.storage.requests, [{ volume: 'vm1-vda', targetBytes: 768 * MiB }]);
    world.monitor.stop();
  });

  it('finds a pause for lack of space it was not told about (agent restarted) and resumes it', async () => {
    const world = setup();
    world.vm.runStateValue = 'io-error';
    world.vm.noSpace.add('vda');
    world.vm.highWater.set('vda', 512 * MiB);
    await world.monitor.start();
    await world.clock.advance(0);
    assert.equal(world.monitor.status().pauses, 1);
    assert.equal(world.vm.resumes, 1);
    world.monitor.stop();
  });

  it('restored from a save taken while paused for lack of space (no drive reports an error any more): gives every drive room, then resumes', async () => {
    const world = setup({ drives: ['vda', 'vdb'] });
    // libvirt's "paused (migrating)" after such a restore, which the libvirt port reads as the I/O error pause it was.
    world.vm.runStateValue = 'io-error';
    world.vm.highWater.set('vda', 100 * MiB);
    await world.monitor.start();
    assert.equal(world.vm.resumes, 0, 'an I/O error pause that no drive explains is not resumed on its own');
    world.monitor.handle({ type: 'restored-paused-for-space' });
    await world.clock.advance(0);
    assert.deepEqual(
      world.storage.requests.map((request) => request.volume).sort(),
      ['vm1-vda', 'vm1-vdb'],
      'what the guest wrote before the save is unknown: each drive gets its free target',
    );
    assert.equal(world.monitor.status().pauses, 1);
    assert.equal(world.vm.resumes, 1);
    assert.equal(world.monitor.pausedForNoSpace, false);
    world.monitor.stop();
  });

  it('waits for every drive that ran out before resuming', async () => {
    const world = setup({ drives: ['vda', 'vdb'] });
    await world.monitor.start();
    world.storage.delayMs = 100;
    world.vm.highWater.set('vda', 512 * MiB);
    hitEnd(world, 'vda');
    await world.clock.advance(50);
    world.storage.delayMs = 500;
    world.vm.highWater.set('vdb', 512 * MiB);
    world.monitor.handle({ type: 'io-error', drive: 'vdb', noSpace: true, action: 'stop' });
    await world.clock.advance(100);
    assert.equal(world.vm.resumes, 0, 'resumed while vdb still had no space');
    await world.clock.advance(500);
    assert.equal(world.vm.resumes, 1);
    world.monitor.stop();
  });

  it('re-arms every threshold after the connection to QEMU comes back', async () => {
    const world = setup();
    await world.monitor.start();
    world.vm.thresholds.clear();
    world.monitor.handle({ type: 'reconnected' });
    await world.clock.advance(0);
    assert.equal(world.vm.thresholds.get('vda'), 384 * MiB);
    world.monitor.stop();
  });

  it('survives a poll whose QMP commands fail and polls again', async () => {
    const world = setup();
    await world.monitor.start();
    world.vm.failNextCalls = 1;
    world.vm.highWater.set('vda', 420 * MiB);
    await world.clock.advance(POLL_MS);
    assert.deepEqual(world.storage.requests, []);
    await world.clock.advance(POLL_MS);
    assert.equal(world.storage.requests.length, 1);
    world.monitor.stop();
  });

  it('stops polling when stopped', async () => {
    const world = setup();
    await world.monitor.start();
    world.monitor.stop();
    assert.equal(world.clock.pendingTimers, 0);
  });
});
