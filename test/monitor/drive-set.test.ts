import assert from 'node:assert/strict';
import type { DriveConfig } from '../../src/monitor/drive-state.js';
import type { PolicySettings } from '../../src/monitor/policy.js';
import { VmMonitor } from '../../src/monitor/vm-monitor.js';
import { silentLogger } from '../../src/log/logger.js';
import { MiB } from '../../src/util/sizes.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { FakeStorage, FakeVm } from '../helpers/fake-vm.js';

const POLICY: PolicySettings = { chunkBytes: 256 * MiB, freeTargetBytes: 128 * MiB, extentBytes: MiB, adaptive: false, adaptiveMaxChunkBytes: 4096 * MiB };
const POLL_MS = 2_000;

/**
 * A VM whose drives change while it runs (hot-plug, unplug, a blockresize,
 * new metadata): the monitor follows each change alone, and work under way on
 * the other drives goes on.
 */
function setup(options: { capBytes?: number; imageCapBytes?: () => number } = {}) {
  const clock = new FakeClock();
  const vm = new FakeVm();
  const storage = new FakeStorage(clock);
  storage.sizes.set('vm1-vda', 512 * MiB);
  vm.highWater.set('vda', 0);
  const asked: string[] = [];
  const monitor = new VmMonitor({
    vm: 'vm1',
    drives: [{ config: { drive: 'vda', volume: 'vm1-vda', capBytes: options.capBytes ?? 4096 * MiB, policy: POLICY }, volumeBytes: 512 * MiB }],
    clock,
    extender: storage,
    control: vm,
    logger: silentLogger,
    pollIntervalMs: POLL_MS,
    retryDelayMs: 5_000,
    ...(options.imageCapBytes
      ? {
          capacity: {
            capBytes: async (config: DriveConfig) => {
              asked.push(config.drive);
              return options.imageCapBytes!();
            },
          },
        }
      : {}),
  });
  const events: string[] = [];
  monitor.on('extended', (event) => events.push(`extended ${event.drive} ${event.toBytes / MiB}`));
  monitor.on('extension-failed', (event) => events.push(`failed ${event.drive} ${event.code}`));
  monitor.on('resumed', () => events.push('resumed'));
  return { clock, vm, storage, monitor, events, asked };
}

describe('VmMonitor: drives that change while the VM runs', () => {
  it('keeps a block copy target (vda@copy) at least as large as the drive it copies, never arming it, each time that drive grows', async () => {
    const world = setup();
    await world.monitor.start();
    world.storage.sizes.set('vm1-copy', 256 * MiB);
    world.monitor.addDrive({ drive: 'vda@copy', volume: 'vm1-copy', capBytes: 4096 * MiB, policy: POLICY, replicaOf: 'vda' }, 256 * MiB);
    await world.clock.advance(0);
    assert.deepEqual(world.storage.requests, [{ volume: 'vm1-copy', targetBytes: 512 * MiB }], 'brought up to the disk it copies at once');
    // The guest writes on: the disk grows, and its copy with it.
    world.vm.highWater.set('vda', 450 * MiB);
    world.monitor.handle({ type: 'threshold', drive: 'vda', highWaterAtLeast: 450 * MiB });
    await world.clock.advance(0);
    assert.deepEqual(world.events, ['extended vda@copy 512', 'extended vda 768', 'extended vda@copy 768']);
    await world.clock.advance(POLL_MS * 3);
    assert.equal(world.vm.thresholds.has('vda@copy'), false, 'never armed: libvirt arms nothing on a copy target');
    assert.equal(world.storage.requests.length, 3, 'nothing more while the disk does not grow');
    world.monitor.stop();
  });

  it("arms a backing layer (vda[2]) but never extends it before a block job writes it; then extends it ahead of the job, asking the SPM only when a refresh shows too little", async () => {
    const world = setup();
    await world.monitor.start();
    // A small layer, its image near its end, as a reduced inner layer or a template is: not a guest writing.
    world.storage.sizes.set('vm1-base', 96 * MiB);
    world.monitor.addDrive({ drive: 'vda[2]', volume: 'vm1-base', capBytes: 4096 * MiB, policy: POLICY, backingLayer: true }, 96 * MiB);
    await world.clock.advance(POLL_MS * 3);
    assert.deepEqual(world.storage.requests, [], 'nothing extended before a write');
    assert.equal(world.vm.thresholds.get('vda[2]'), 1, 'armed at its first byte: a threshold of 0 is none to QEMU');

    // An administrator's `virsh blockcommit` merges into it: its threshold fires.
    world.monitor.handle({ type: 'threshold', drive: 'vda[2]', highWaterAtLeast: 90 * MiB });
    await world.clock.advance(0);
    assert.deepEqual(world.storage.requests, [{ volume: 'vm1-base', targetBytes: 352 * MiB }]);
    assert.equal(world.vm.thresholds.get('vda[2]'), 352 * MiB - POLICY.freeTargetBytes, 'armed again above the new size');

    // Given room by whoever ran the job (tideline's own commit extends the base first): a refresh finds it, the SPM is not asked.
    world.storage.sizes.set('vm1-base', 1024 * MiB);
    world.monitor.handle({ type: 'threshold', drive: 'vda[2]', highWaterAtLeast: 300 * MiB });
    await world.clock.advance(0);
    assert.equal(world.storage.requests.length, 1, 'no second request');
    assert.equal(world.vm.thresholds.get('vda[2]'), 1024 * MiB - POLICY.freeTargetBytes);
    assert.deepEqual(world.events, ['extended vda[2] 352']);

    // Reduced to its image's end plus a little (a commit giving space back): armed again below the new end.
    world.storage.sizes.set('vm1-base', 320 * MiB);
    world.monitor.volumeReduced('vm1-base', 320 * MiB);
    world.monitor.volumeReduced('vm1-vda', 64 * MiB);
    await world.clock.advance(0);
    assert.equal(world.vm.thresholds.get('vda[2]'), 320 * MiB - POLICY.freeTargetBytes);
    assert.equal(world.monitor.status().drives.find((drive) => drive.drive === 'vda')!.volumeBytes, 512 * MiB, 'the active layer is never taken for a reduced one');
    world.monitor.stop();
  });

  it('arms a hot-plugged drive at once and extends it, leaving the other drive alone', async () => {
    const world = setup();
    await world.monitor.start();
    world.storage.sizes.set('vm1-vdb', 128 * MiB);
    world.vm.highWater.set('vdb', 100 * MiB);
    world.monitor.addDrive({ drive: 'vdb', volume: 'vm1-vdb', capBytes: 4096 * MiB, policy: POLICY }, 128 * MiB);
    await world.clock.advance(0);
    assert.deepEqual(world.storage.requests, [{ volume: 'vm1-vdb', targetBytes: 384 * MiB }], 'the new drive was near its end: extended at once');
    assert.equal(world.vm.thresholds.get('vdb'), 256 * MiB);
    assert.equal(world.vm.thresholds.get('vda'), 384 * MiB);
    assert.deepEqual(world.monitor.status().drives.map((drive) => drive.drive), ['vda', 'vdb']);
    assert.throws(() => world.monitor.addDrive({ drive: 'vdb', volume: 'vm1-vdb', capBytes: 4096 * MiB, policy: POLICY }, 128 * MiB), /watched already/);
    world.monitor.stop();
  });

  it('an unplugged drive is never extended again, even with an extension of it in flight, and a pause that waited only for it ends', async () => {
    const world = setup();
    await world.monitor.start();
    world.storage.delayMs = 1_000;
    world.vm.highWater.set('vda', 450 * MiB);
    world.monitor.handle({ type: 'threshold', drive: 'vda', highWaterAtLeast: 450 * MiB });
    await world.clock.advance(10);
    world.monitor.removeDrive('vda');
    await world.clock.advance(1_000);
    await world.clock.advance(POLL_MS * 3);
    assert.equal(world.storage.requests.length, 1, 'only the extension already asked for');
    assert.deepEqual(world.monitor.status().drives, []);
    world.monitor.stop();
  });

  it("follows a policy change without dropping what the drive saw, and re-arms by the new free target", async () => {
    const world = setup();
    await world.monitor.start();
    world.vm.highWater.set('vda', 300 * MiB);
    await world.clock.advance(POLL_MS);
    world.monitor.reconfigureDrive({ drive: 'vda', volume: 'vm1-vda', capBytes: 4096 * MiB, policy: { ...POLICY, freeTargetBytes: 64 * MiB } });
    await world.clock.advance(0);
    assert.equal(world.vm.thresholds.get('vda'), 448 * MiB);
    assert.equal(world.monitor.status().drives[0]!.highWaterBytes, 300 * MiB);
    world.monitor.stop();
  });

  it('a drive near its cap asks its image at the safety poll: after a blockresize it extends past the old cap with no pause', async () => {
    let imageCap = 640 * MiB;
    const world = setup({ capBytes: 640 * MiB, imageCapBytes: () => imageCap });
    await world.monitor.start();
    world.vm.highWater.set('vda', 450 * MiB);
    world.monitor.handle({ type: 'threshold', drive: 'vda', highWaterAtLeast: 450 * MiB });
    await world.clock.advance(0);
    assert.deepEqual(world.storage.requests, [{ volume: 'vm1-vda', targetBytes: 640 * MiB }], 'capped at the image');
    // The admin grows the image; the guest writes on towards the old end.
    imageCap = 2048 * MiB;
    world.vm.highWater.set('vda', 560 * MiB);
    await world.clock.advance(POLL_MS);
    assert.ok(world.asked.includes('vda'));
    assert.equal(world.monitor.status().drives[0]!.capBytes, 2048 * MiB);
    assert.deepEqual(world.storage.requests.at(-1), { volume: 'vm1-vda', targetBytes: 896 * MiB });
    assert.equal(world.monitor.status().pauses, 0);
    world.monitor.stop();
  });

  it('a write that found no space at the cap asks the image before refusing: grown, it extends and resumes; not grown, it says cap-reached', async () => {
    let imageCap = 512 * MiB;
    const world = setup({ capBytes: 512 * MiB, imageCapBytes: () => imageCap });
    await world.monitor.start();
    world.vm.runStateValue = 'io-error';
    world.vm.noSpace.add('vda');
    world.monitor.handle({ type: 'io-error', drive: 'vda', noSpace: true, action: 'stop' });
    await world.clock.advance(0);
    assert.deepEqual(world.events, ['failed vda cap-reached']);
    imageCap = 1024 * MiB;
    await world.clock.advance(5_000);
    assert.deepEqual(world.storage.requests, [{ volume: 'vm1-vda', targetBytes: 768 * MiB }]);
    assert.ok(world.events.includes('resumed'));
    world.monitor.stop();
  });
});
