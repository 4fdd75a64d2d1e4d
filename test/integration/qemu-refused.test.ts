import assert from 'node:assert/strict';
import { LabWorld } from './helpers/lab-world.js';
import { until, watch } from './helpers/watch.js';
import type { QemuAttachment } from '../../src/agent/qemu-attachment.js';
import { QmpClient } from '../../src/qmp/client.js';
import { MiB } from '../../src/util/sizes.js';

describe('real QEMU: extension refused', function () {
  this.timeout(5 * 60_000);
  let world: LabWorld;
  let attachment: QemuAttachment | undefined;
  let admin: QmpClient | undefined;

  afterEach(async () => {
    attachment?.stop();
    admin?.close();
    await world.dispose();
  });

  async function expectStaysPaused(code: string): Promise<void> {
    const vm = world.vms[0]!;
    admin = new QmpClient(vm.adminSocket);
    await admin.start();
    const paused = async () => (await admin!.execute<{ status: string }>('query-status')).status;
    // The refusal may come first on the threshold path, while the guest still has room to write.
    await until(async () => attachment!.status()?.drives[0]?.error?.code === code && (await paused()) === 'io-error', 90_000, `a ${code} error on vda and the VM paused`);
    // Retries run every second; none may resume the VM or shrink anything.
    const sizeBefore = (await world.plugin.describe(vm.volume)).sizeBytes;
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    assert.equal(await paused(), 'io-error', 'a VM whose extension was refused must stay paused');
    const status = attachment!.status()!;
    assert.equal(status.pausedForNoSpace, true);
    assert.equal(status.drives[0]!.drive, 'vda');
    assert.equal(status.drives[0]!.error?.code, code);
    assert.ok((await world.plugin.describe(vm.volume)).sizeBytes >= sizeBefore);
  }

  it('keeps the VM paused with a cap-reached error naming the drive when the drive is at its size limit', async () => {
    world = await LabWorld.create();
    const vm = await world.startVm({ name: 'capped', writeMib: 1024 });
    attachment = await watch(world, vm, { maxSizeBytes: 512 * MiB });
    await expectStaysPaused('cap-reached');
    assert.match(attachment.status()!.drives[0]!.error!.message, /drive vda of capped .* cap of 536870912 bytes/);
  });

  it('keeps the VM paused with a domain-full error when the storage domain has no space left', async () => {
    world = await LabWorld.create(600 * MiB);
    const vm = await world.startVm({ name: 'vgfull', writeMib: 1024 });
    attachment = await watch(world, vm);
    await expectStaysPaused('domain-full');
    assert.match(attachment.status()!.drives[0]!.error!.message, /storage domain .* volume vgfull-vda needs/);
  });
});
