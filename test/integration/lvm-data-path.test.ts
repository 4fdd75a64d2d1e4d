import assert from 'node:assert/strict';
import { open } from 'node:fs/promises';
import type { LvmPlugin } from '../../plugins/lvm/index.js';
import { LvmWorld } from '../../src/lab/lvm-world.js';
import type { StorageHost } from '../../src/lab/storage-host.js';
import { silentLogger } from '../../src/log/logger.js';
import { createChildVolume, createThinVolume, deleteThinVolume, reduceThinVolume } from '../../src/spm/volume-lifecycle.js';
import { GiB, MiB } from '../../src/util/sizes.js';

/**
 * The lvm plugin's data path for real: two TCG guests with device-mapper
 * ("host A", the SPM, and "host B") share one LUN. Every LVM, qemu-img and
 * qemu-io command runs inside a guest through its guest agent; the plugin
 * does not know it.
 */
const VG = 'tideline_test';
const VOLUME = 'vm1-vda';
const READ_ONLY_LVM = ['--config', 'global { locking_type = 4 }', '--devices', '/dev/vda'];

describe('real LVM with device-mapper: two hosts on one LUN (storage host guests)', function () {
  this.timeout(5 * 60_000);
  let world: LvmWorld;
  let spm: LvmPlugin;
  let hostB: LvmPlugin;
  let device: string;

  before(async () => {
    world = await LvmWorld.start({ prefix: 'tideline-lvm-world-', hosts: ['a', 'b'], lunBytes: 2 * GiB, vg: VG, extentBytes: 4 * MiB, logger: silentLogger, timeoutMs: 10 * 60_000 });
    await world.createDomain('a');
    spm = await world.plugin('a', 'spm');
    hostB = await world.plugin('b', 'host');
  });
  after(async () => {
    await world?.dispose();
  });

  it('the domain VG is never auto-activated: a boot-time `vgchange -aay` on host B activates nothing', async () => {
    await createThinVolume(spm, world.host('a').run, VOLUME, 64 * MiB, GiB);
    const report = await world.host('b').run('vgs', [...READ_ONLY_LVM, '--reportformat', 'json', '-o', 'vg_autoactivation', VG]);
    assert.match(report.stdout, /"vg_autoactivation":""/, report.stdout);
    await world.host('b').run('vgchange', ['--devices', '/dev/vda', '--activate', 'ay', VG]);
    assert.equal(await hostB.isActive(VOLUME), false);
    assert.equal(await spm.isActive(VOLUME), false, 'createThinVolume deactivates after writing the qcow2 header');
  });

  it('host B writes near the end; after the SPM extends, B still has the old size (ENOSPC) until refresh; then the write lands and all reads back', async () => {
    const b = world.host('b');
    device = await hostB.activate(VOLUME);
    assert.equal(device, `/dev/${VG}/${VOLUME}`);
    assert.equal(await blockDeviceBytes(b, device), 64 * MiB);
    assertQemuIo(await qemuIo(b, device, ['write -P 0xa1 0 40M']), 'ok');

    assert.equal((await spm.extend(VOLUME, 128 * MiB)).sizeBytes, 128 * MiB);
    assert.equal((await hostB.describe(VOLUME)).sizeBytes, 128 * MiB, 'host B reads the new size from the metadata');
    assert.equal(await blockDeviceBytes(b, device), 64 * MiB, "host B's device-mapper table still has the old size");
    assertQemuIo(await qemuIo(b, device, ['write -P 0xb2 40M 32M']), 'no-space');

    assert.equal(await hostB.refresh(VOLUME), 128 * MiB);
    assert.equal(await blockDeviceBytes(b, device), 128 * MiB);
    assertQemuIo(await qemuIo(b, device, ['write -P 0xb2 40M 32M']), 'ok');
    assertQemuIo(await qemuIo(b, device, ['read -P 0xa1 0 40M', 'read -P 0xb2 40M 32M']), 'ok');
    const check = await b.run('qemu-img', ['check', '-f', 'qcow2', device], { acceptExitCodes: [3] });
    assert.ok(check.exitCode === 0 || check.exitCode === 3, `qemu-img check: no corruption (leaked clusters from the refused write are harmless): ${check.stdout}`);
  });

  it('deactivates on host B, activates on host A, and A reads the same data from the shared LUN', async () => {
    await hostB.deactivate(VOLUME);
    assert.equal(await hostB.isActive(VOLUME), false);
    const a = world.host('a');
    const onA = await spm.activate(VOLUME);
    assert.equal(await blockDeviceBytes(a, onA), 128 * MiB);
    assertQemuIo(await qemuIo(a, onA, ['read -P 0xa1 0 40M', 'read -P 0xb2 40M 32M'], { readOnly: true }), 'ok');
  });

  it('refuses to delete a volume that is active on the SPM host, then zeroes its extents on a real mapping before lvremove', async () => {
    await assert.rejects(deleteThinVolume(spm, world.host('a').run, VOLUME, { logger: silentLogger }), { code: 'volume-in-use' });
    await spm.deactivate(VOLUME);
    const extents = await volumeExtents(world.host('a'), VOLUME);
    assert.equal(extents.length, 128 * MiB);
    assert.ok(!(await isZero(world.lunPath, extents)), 'the volume holds data before the delete');
    await deleteThinVolume(spm, world.host('a').run, VOLUME, { logger: silentLogger });
    assert.ok(await isZero(world.lunPath, extents), 'every byte of the removed volume is zero on the LUN');
    assert.deepEqual((await hostB.list()).map((volume) => volume.name), []);
  });

  it('gives space back on real LVM: an unused volume is reduced to its image end plus the free target, its data intact; an active top is not, an active inner layer is', async () => {
    const a = world.host('a');
    await createThinVolume(spm, a.run, 'shrinkme', 16 * MiB, GiB);
    await spm.extend('shrinkme', 256 * MiB);
    const device = await spm.activate('shrinkme');
    assertQemuIo(await qemuIo(a, device, ['write -P 0xc3 0 40M']), 'ok');
    await assert.rejects(reduceThinVolume(spm, a.run, 'shrinkme', 8 * MiB), { code: 'volume-in-use' });
    await spm.deactivate('shrinkme');
    const reduced = await reduceThinVolume(spm, a.run, 'shrinkme', 8 * MiB);
    assert.ok(reduced > 40 * MiB && reduced <= 56 * MiB, `lvreduce to ${reduced / MiB} MiB: 40 MiB of data, metadata and 8 MiB free, in 4 MiB extents`);
    assert.equal((await hostB.describe('shrinkme')).sizeBytes, reduced, 'every host reads the new size from the VG');
    const again = await spm.activate('shrinkme');
    assert.equal(await blockDeviceBytes(a, again), reduced);
    assertQemuIo(await qemuIo(a, again, ['read -P 0xc3 0 40M'], { readOnly: true }), 'ok');
    const check = await a.run('qemu-img', ['check', '-f', 'qcow2', again], { acceptExitCodes: [3] });
    assert.equal(check.exitCode, 0, check.stdout);
    await spm.deactivate('shrinkme');

    // Under a child it is an inner layer, read-only for any VM: reduced while active on both hosts (lvreduce of an active LV on A), B refreshes.
    await createChildVolume(spm, a.run, 'shrinkme-top', 'shrinkme', 16 * MiB);
    await spm.extend('shrinkme', 256 * MiB);
    const onA = await spm.activate('shrinkme');
    const onB = await hostB.activate('shrinkme');
    const b = world.host('b');
    assert.equal(await reduceThinVolume(spm, a.run, 'shrinkme', 8 * MiB), reduced);
    assert.equal(await blockDeviceBytes(a, onA), reduced, 'the SPM host sees the smaller LV at once');
    assert.equal(await hostB.refresh('shrinkme'), reduced);
    assert.equal(await blockDeviceBytes(b, onB), reduced, 'host B sees it after its refresh');
    assertQemuIo(await qemuIo(b, onB, ['read -P 0xc3 0 40M'], { readOnly: true }), 'ok');
    await hostB.deactivate('shrinkme');
    await spm.deactivate('shrinkme');
    await deleteThinVolume(spm, a.run, 'shrinkme-top', { logger: silentLogger });
    await deleteThinVolume(spm, a.run, 'shrinkme', { logger: silentLogger });
  });

  it("host B's LVM itself refuses every metadata change (read-only mode); the SPM's does not", async () => {
    await spm.create('probe', 8 * MiB, { owner: 'spm' });
    await assert.rejects(hostB.extend('probe', 16 * MiB), { code: 'metadata-read-only' });
    await assert.rejects(hostB.create('other', 8 * MiB), { code: 'metadata-read-only' });
    await assert.rejects(hostB.remove('probe'), { code: 'metadata-read-only' });
    const tag = await world.host('b').run('lvchange', [...READ_ONLY_LVM, '--addtag', 'owner=b', `${VG}/probe`], { acceptExitCodes: [5] });
    assert.equal(tag.exitCode, 5, tag.stderr);
    assert.deepEqual(await hostB.describe('probe'), { name: 'probe', sizeBytes: 8 * MiB, tags: { owner: 'spm' } });
    await spm.remove('probe');
  });

  it('names a missing volume on activation, and refuses to shrink on the SPM', async () => {
    await assert.rejects(hostB.activate('nosuch'), { code: 'volume-not-found' });
    await spm.create('small', 16 * MiB);
    await assert.rejects(spm.extend('small', 8 * MiB), { code: 'shrink-refused' });
    assert.equal((await hostB.describe('small')).sizeBytes, 16 * MiB);
    await spm.remove('small');
  });
});

async function blockDeviceBytes(host: StorageHost, device: string): Promise<number> {
  return Number((await host.run('blockdev', ['--getsize64', device])).stdout.trim());
}

/** qemu-io on the guest's device, O_DIRECT (no guest page cache between hosts); its output for the caller to judge. */
async function qemuIo(host: StorageHost, device: string, commands: string[], options: { readOnly?: boolean } = {}): Promise<string> {
  const args = ['-f', 'qcow2', '-t', 'none', ...(options.readOnly ? ['-r'] : []), ...commands.flatMap((command) => ['-c', command]), device];
  const result = await host.run('qemu-io', args, { acceptExitCodes: [1], timeoutMs: 120_000 });
  return `${result.stdout}\n${result.stderr}`;
}

function assertQemuIo(output: string, expected: 'ok' | 'no-space'): void {
  if (expected === 'no-space') {
    assert.match(output, /No space left on device/, output);
    return;
  }
  assert.doesNotMatch(output, /failed|error|Pattern verification/i, output);
  assert.match(output, /(wrote|read) \d+\/\d+ bytes/, output);
}

/** Where the volume's extents lie on the LUN (it is linear and, in this fresh VG, contiguous). */
async function volumeExtents(host: StorageHost, volume: string): Promise<{ offset: number; length: number }> {
  const report = (args: string[]) => host.run(args[0]!, [...READ_ONLY_LVM, '--reportformat', 'json', '--units', 'b', '--nosuffix', ...args.slice(1)]);
  const lv = JSON.parse((await report(['lvs', '-o', 'seg_pe_ranges', `${VG}/${volume}`])).stdout) as { report: Array<{ lv: Array<{ seg_pe_ranges: string }> }> };
  const pv = JSON.parse((await report(['pvs', '-o', 'pe_start,vg_extent_size', '/dev/vda'])).stdout) as { report: Array<{ pv: Array<{ pe_start: string; vg_extent_size: string }> }> };
  const ranges = lv.report[0]!.lv.map((segment) => segment.seg_pe_ranges);
  assert.equal(ranges.length, 1, `one segment: ${ranges.join(' ')}`);
  const [, first, last] = /:(\d+)-(\d+)$/.exec(ranges[0]!)!;
  const extent = Number(pv.report[0]!.pv[0]!.vg_extent_size);
  return { offset: Number(pv.report[0]!.pv[0]!.pe_start) + Number(first) * extent, length: (Number(last) - Number(first) + 1) * extent };
}

async function isZero(file: string, range: { offset: number; length: number }): Promise<boolean> {
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.alloc(4 * MiB);
    for (let done = 0; done < range.length; done += buffer.length) {
      const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, range.length - done), range.offset + done);
      if (!buffer.subarray(0, bytesRead).every((byte) => byte === 0)) return false;
    }
    return true;
  } finally {
    await handle.close();
  }
}
