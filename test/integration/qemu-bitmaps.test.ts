import assert from 'node:assert/strict';
import path from 'node:path';
import { driveCapBytes, qcow2BitmapBytes } from '../../src/monitor/qcow2-capacity.js';
import { GiB, KiB } from '../../src/util/sizes.js';
import { LabWorld } from './helpers/lab-world.js';
import { TidelineProcess } from './helpers/tideline-process.js';

/**
 * A plain QEMU whose image carries persistent dirty bitmaps (a backup tool's):
 * the agent reads them from the image's header and raises the drive's cap by
 * what they can take, as the libvirt agent does.
 */
describe('real QEMU: the cap of a drive with persistent dirty bitmaps', function () {
  this.timeout(3 * 60_000);
  let world: LabWorld;
  let agent: TidelineProcess | undefined;

  before(async () => {
    world = await LabWorld.create();
  });
  after(async () => {
    await agent?.kill().catch(() => undefined);
    await world?.dispose();
  });

  it('adds the room the bitmaps can take to the cap (the number qemu-img measure reports)', async () => {
    const granularities = [64 * KiB, 16 * KiB];
    const vm = await world.startVm({ name: 'bitmaps', writeMib: 64, bitmapGranularities: granularities });
    agent = new TidelineProcess('agent', ['agent', '--qmp', `bitmaps=${vm.qmpSocket}`, '--domain', world.workspace.domainDir, '--status-file', path.join(world.dir, 'status.json'), '--control-socket', path.join(world.dir, 'agent.sock')]);
    await agent.waitFor('watching thin drive', 60_000);
    const watching = agent.logged('watching thin drive')[0]!;
    // The lab image: 4 GiB virtual, QEMU's default 64 KiB clusters; the directory holds two small entries (one cluster).
    const expectedBitmaps = qcow2BitmapBytes(4 * GiB, 64 * KiB, granularities, 64 * KiB);
    assert.equal(watching.bitmapBytes, expectedBitmaps);
    assert.equal(watching.capBytes, driveCapBytes(4 * GiB, 64 * KiB, world.plugin.extentBytes, undefined, expectedBitmaps));
    assert.ok(Number(watching.capBytes) > driveCapBytes(4 * GiB, 64 * KiB, world.plugin.extentBytes), 'the cap grew by the bitmaps');
    const progress = await vm.finished();
    assert.equal(progress.result?.bad, 0);
  });
});
