import assert from 'node:assert/strict';
import { LabWorld } from './helpers/lab-world.js';
import { watch } from './helpers/watch.js';
import type { QemuAttachment } from '../../src/agent/qemu-attachment.js';

describe('real QEMU: threshold path', function () {
  this.timeout(5 * 60_000);
  let world: LabWorld;
  let attachment: QemuAttachment | undefined;

  beforeEach(async () => {
    world = await LabWorld.create();
  });
  afterEach(async () => {
    attachment?.stop();
    await world.dispose();
  });

  it('grows a 128 MiB volume under a guest writing 2 GiB, with no pause and intact data', async () => {
    const vm = await world.startVm({ name: 'threshold', writeMib: 2048 });
    attachment = await watch(world, vm);
    const progress = await vm.finished();
    const status = attachment.status()!;
    const drive = status.drives[0]!;

    assert.equal(progress.errors.length, 0, `guest errors: ${progress.errors.join('; ')}`);
    assert.ok(progress.result, `guest gave no result; console in ${vm.consoleLog}`);
    assert.equal(progress.result.bad, 0, 'units read back differ from what was written');
    assert.equal(progress.result.units, 128);
    assert.equal(status.pauses, 0, `the VM paused (${status.pausedMsTotal} ms in total) although thresholds should have extended in time; last extension took ${drive.lastExtensionMs} ms`);
    assert.ok(drive.volumeBytes >= 2048 * 1024 * 1024, `volume ${drive.volumeBytes} is smaller than the data written`);
    assert.ok(drive.extensions >= 7, `only ${drive.extensions} extensions`);
    const onDisk = (await world.plugin.describe(vm.volume)).sizeBytes;
    assert.equal(onDisk, drive.volumeBytes);
  });
});
