import assert from 'node:assert/strict';
import { LabWorld } from './helpers/lab-world.js';
import { until, watch } from './helpers/watch.js';
import type { QemuAttachment } from '../../src/agent/qemu-attachment.js';
import { QmpClient } from '../../src/qmp/client.js';

describe('real QEMU: ENOSPC pause and resume', function () {
  this.timeout(5 * 60_000);
  let world: LabWorld;
  let attachment: QemuAttachment | undefined;
  let admin: QmpClient | undefined;

  beforeEach(async () => {
    world = await LabWorld.create();
  });
  afterEach(async () => {
    attachment?.stop();
    admin?.close();
    await world.dispose();
  });

  it('pauses when a slow extension lets the guest hit the end, then extends and resumes it with intact data', async () => {
    const vm = await world.startVm({ name: 'enospc', writeMib: 1024 });
    // A small free target and a slow extension: even a guest slowed to a few MiB/s by the other
    // tests sharing the two cores reaches the end before the extension lands.
    attachment = await watch(world, vm, { delayMs: 3_000, policy: { freeTargetBytes: 16 * 1024 * 1024, chunkBytes: 64 * 1024 * 1024 } });
    const seenPauses: string[][] = [];
    attachment.on('paused', ({ drives }) => seenPauses.push(drives));
    const progress = await vm.finished();
    const status = attachment.status()!;

    assert.ok(progress.result, `guest gave no result; console in ${vm.consoleLog}`);
    assert.equal(progress.result.bad, 0, 'data read back differs from what was written');
    assert.ok(status.pauses >= 1, 'the slowed extension should have let the guest hit ENOSPC');
    assert.deepEqual(seenPauses[0], ['vda']);
    assert.equal(status.pausedForNoSpace, false);
    assert.notEqual(status.lastResumeMs, null);
  });

  it('never resumes a VM that someone else paused with QMP stop', async () => {
    const vm = await world.startVm({ name: 'adminstop', writeMib: 1024 });
    attachment = await watch(world, vm);
    admin = new QmpClient(vm.adminSocket);
    await admin.start();
    await until(() => (attachment!.status()?.drives[0]?.highWaterBytes ?? 0) > 64 * 1024 * 1024, 60_000, 'the guest to write');
    await admin.execute('stop');
    // Several safety polls and any in-flight extension run while it is paused.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const { status } = await admin.execute<{ status: string }>('query-status');
    assert.equal(status, 'paused', 'tideline resumed a VM it did not pause');
    assert.equal(attachment.status()!.pausedForNoSpace, false);

    await admin.execute('cont');
    const progress = await vm.finished();
    assert.ok(progress.result, `guest gave no result; console in ${vm.consoleLog}`);
    assert.equal(progress.result.bad, 0);
  });
});
