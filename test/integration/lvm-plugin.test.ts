import assert from 'node:assert/strict';
import path from 'node:path';
import { mkdir, truncate, writeFile } from 'node:fs/promises';
import { execa } from 'execa';
import { LvmPlugin } from '../../plugins/lvm/index.js';
import { Workspace } from '../../src/lab/workspace.js';
import { execaRunner } from '../../src/util/runner.js';
import { GiB, MiB } from '../../src/util/sizes.js';
import { builtCli } from './helpers/built-cli.js';

/**
 * The lvm plugin against real LVM: a VG on a loop device, metadata commands
 * with activation = 0 because this kernel has no device-mapper. Activation and
 * refresh of an active LV cannot be exercised here; the tests check that the
 * plugin says so instead of pretending.
 */
const NO_TRACES = { backup: { backup: 0, archive: 0 } };

describe('lvm plugin against real LVM (activation disabled)', function () {
  this.timeout(120_000);
  let workspace: Workspace;
  let loopDevice: string;
  let vg: string;
  let plugin: LvmPlugin;

  before(async () => {
    workspace = await Workspace.create({ prefix: 'tideline-lvm-test-', capacityBytes: GiB, run: execaRunner });
    const backing = path.join(workspace.dir, 'pv.img');
    await writeFile(backing, '');
    await truncate(backing, GiB);
    loopDevice = (await execaRunner('losetup', ['--find', '--show', backing])).stdout.trim();
    vg = `tltest${process.pid}`;
    const config = ['--config', `global { activation = 0 } devices { use_devicesfile = 0 } backup { backup = 0 archive = 0 }`, '--devices', loopDevice];
    const env = { LVM_SUPPRESS_FD_WARNINGS: '1' };
    await execaRunner('pvcreate', [...config, loopDevice], { env });
    await execaRunner('vgcreate', [...config, '--physicalextentsize', '4m', vg, loopDevice], { env });
    plugin = await LvmPlugin.open({ vg, run: execaRunner, role: 'spm', activation: false, devices: [loopDevice], extraSettings: NO_TRACES });
  });
  after(async () => {
    // Detaching the loop device and deleting its file removes the VG with it; nothing of it lives elsewhere.
    await workspace?.dispose();
  });

  it('reads the VG: extent size and free space', async () => {
    assert.equal(plugin.extentBytes, 4 * MiB);
    const free = await plugin.freeBytes();
    assert.ok(free > 900 * MiB && free <= GiB, `free ${free}`);
  });

  it('creates an LV rounded up to whole extents, with tideline metadata in its tags', async () => {
    const created = await plugin.create('vm1-vda', 10 * MiB, { 'virtual-bytes': String(4 * GiB), owner: 'host-3' });
    assert.equal(created.sizeBytes, 12 * MiB);
    const described = await plugin.describe('vm1-vda');
    assert.deepEqual(described, { name: 'vm1-vda', sizeBytes: 12 * MiB, tags: { 'virtual-bytes': String(4 * GiB), owner: 'host-3' } });
    assert.deepEqual((await plugin.list()).map((volume) => volume.name), ['vm1-vda']);
    await assert.rejects(plugin.create('vm1-vda', 4 * MiB), { code: 'volume-exists' });
  });

  it('extends to an absolute size, refuses to shrink, and reports a full VG as domain-full', async () => {
    const tags = { 'virtual-bytes': String(4 * GiB), owner: 'host-3' };
    // Without an lvs after lvextend: the size is the target, the tags as last read.
    assert.deepEqual(await plugin.extend('vm1-vda', 96 * MiB), { name: 'vm1-vda', sizeBytes: 96 * MiB, tags });
    assert.deepEqual(await plugin.describe('vm1-vda'), { name: 'vm1-vda', sizeBytes: 96 * MiB, tags });
    // A plugin that never read the volume reads it after extending.
    const fresh = await LvmPlugin.open({ vg, run: execaRunner, role: 'spm', activation: false, devices: [loopDevice], extraSettings: NO_TRACES });
    assert.deepEqual(await fresh.extend('vm1-vda', 100 * MiB), { name: 'vm1-vda', sizeBytes: 100 * MiB, tags });
    await assert.rejects(plugin.extend('vm1-vda', 50 * MiB), { code: 'shrink-refused' });
    assert.equal((await plugin.extend('vm1-vda', 100 * MiB)).sizeBytes, 100 * MiB, 'the current size again changes nothing');
    assert.equal((await plugin.extend('vm1-vda', 101 * MiB)).sizeBytes, 104 * MiB);
    const error = await plugin.extend('vm1-vda', 4 * GiB).catch((caught: unknown) => caught);
    assert.equal((error as { code?: string }).code, 'domain-full');
    assert.match((error as Error).message, new RegExp(`storage domain ${vg} has \\d+ bytes free`));
    assert.equal((await plugin.describe('vm1-vda')).sizeBytes, 104 * MiB);
  });

  it('names unknown volumes and bad names clearly', async () => {
    await assert.rejects(plugin.describe('nosuch'), { code: 'volume-not-found' });
    await assert.rejects(plugin.extend('nosuch', 8 * MiB), { code: 'volume-not-found' });
    await assert.rejects(plugin.create('../etc', 8 * MiB), { code: 'invalid-volume-name' });
  });

  it('says that activation is impossible on this host instead of pretending; refresh reads the size from metadata', async () => {
    await assert.rejects(plugin.activate('vm1-vda'), /activation is disabled on this host \(no device-mapper\)/);
    assert.equal(await plugin.refresh('vm1-vda'), 104 * MiB);
  });

  it('finds the PVs of its VG itself when no device is named', async () => {
    const found = await LvmPlugin.open({ vg, run: execaRunner, role: 'host', activation: false, extraSettings: NO_TRACES });
    assert.equal((await found.describe('vm1-vda')).sizeBytes, 104 * MiB);
    await assert.rejects(LvmPlugin.open({ vg: `${vg}-missing`, run: execaRunner, role: 'host', activation: false, extraSettings: NO_TRACES }), /no device of this host carries volume group/);
  });

  it('replaces or removes one tag in place (a layer\'s parent after an inner commit or a block pull), and only on the SPM', async () => {
    assert.deepEqual((await plugin.setTag('vm1-vda', 'parent', 'tpl-a')).tags, { 'virtual-bytes': String(4 * GiB), owner: 'host-3', parent: 'tpl-a' });
    assert.deepEqual((await plugin.setTag('vm1-vda', 'parent', 'tpl-b')).tags, { 'virtual-bytes': String(4 * GiB), owner: 'host-3', parent: 'tpl-b' }, 'the old value is gone');
    const host = await LvmPlugin.open({ vg, run: execaRunner, role: 'host', activation: false, devices: [loopDevice], extraSettings: NO_TRACES });
    await assert.rejects(host.setTag('vm1-vda', 'parent', 'tpl-c'), { code: 'metadata-read-only' });
    await assert.rejects(plugin.setTag('vm1-vda', 'parent', 'a b'), /cannot be stored as an LVM tag/);
    assert.equal((await plugin.describe('vm1-vda')).tags.parent, 'tpl-b');
    assert.deepEqual((await plugin.setTag('vm1-vda', 'parent', undefined)).tags, { 'virtual-bytes': String(4 * GiB), owner: 'host-3' }, 'removed');
    assert.deepEqual((await plugin.setTag('vm1-vda', 'parent', undefined)).tags, { 'virtual-bytes': String(4 * GiB), owner: 'host-3' }, 'removing an absent tag changes nothing');
  });

  it('as a host that is not the SPM, LVM itself refuses every metadata change', async () => {
    const host = await LvmPlugin.open({ vg, run: execaRunner, role: 'host', activation: false, devices: [loopDevice], extraSettings: NO_TRACES });
    await assert.rejects(host.extend('vm1-vda', 200 * MiB), { code: 'metadata-read-only' });
    await assert.rejects(host.create('vm2-vda', 8 * MiB), { code: 'metadata-read-only' });
    await assert.rejects(host.remove('vm1-vda'), { code: 'metadata-read-only' });
    assert.equal((await plugin.describe('vm1-vda')).sizeBytes, 104 * MiB);
    assert.deepEqual((await plugin.list()).map((volume) => volume.name), ['vm1-vda']);
  });

  it('maps device paths of its VG back to volume names, and no others', async () => {
    assert.equal(await plugin.volumeForPath(`/dev/${vg}/vm1-vda`), 'vm1-vda');
    assert.equal(await plugin.volumeForPath(`/dev/mapper/${vg}-vm1--vda`), 'vm1-vda');
    assert.equal(await plugin.volumeForPath('/dev/othervg/vm1-vda'), undefined);
  });

  it('`tideline lvm-domain create` makes a VG with the given extent size that is never auto-activated, and refuses a second one', async () => {
    const backing = path.join(workspace.dir, 'pv2.img');
    await writeFile(backing, '');
    await truncate(backing, 256 * MiB);
    const device = (await execaRunner('losetup', ['--find', '--show', backing])).stdout.trim();
    // The CLI's LVM reads this lvm.conf instead of /etc/lvm's: no metadata backups, so nothing is left in /etc/lvm.
    const lvmSystemDir = path.join(workspace.dir, 'lvm');
    await mkdir(lvmSystemDir);
    await writeFile(path.join(lvmSystemDir, 'lvm.conf'), 'backup { backup = 0 archive = 0 }\n');
    const secondVg = `${vg}b`;
    const cli = (args: string[]) => execa('node', [builtCli(), ...args], { reject: false, env: { LVM_SYSTEM_DIR: lvmSystemDir } });
    const created = await cli(['lvm-domain', 'create', secondVg, device, '--extent-size', '8M', '--no-activation']);
    assert.equal(created.exitCode, 0, created.stderr);
    assert.match(created.stdout, new RegExp(`volume group ${secondVg} created on ${device}; it is never auto-activated`));
    const opened = await LvmPlugin.open({ vg: secondVg, run: execaRunner, role: 'host', activation: false, devices: [device], extraSettings: NO_TRACES });
    assert.equal(opened.extentBytes, 8 * MiB);
    const report = await execaRunner('vgs', ['--config', `global { activation = 0 } devices { use_devicesfile = 0 } backup { backup = 0 archive = 0 }`, '--devices', device, '--reportformat', 'json', '-o', 'vg_autoactivation', secondVg], { env: { LVM_SUPPRESS_FD_WARNINGS: '1' } });
    assert.match(report.stdout, /"vg_autoactivation":""/);
    const again = await cli(['lvm-domain', 'create', secondVg, device, '--no-activation']);
    assert.equal(again.exitCode, 1);
    assert.match(again.stderr, new RegExp(`${device} already belongs to volume group ${secondVg}`));
    const bad = await cli(['lvm-domain', 'create', 'x', 'sda', '--no-activation']);
    assert.match(bad.stderr, /device 'sda' must be a block device path under \/dev/);
  });

  it('removes an LV and reports a second removal as not found', async () => {
    await plugin.remove('vm1-vda');
    assert.deepEqual(await plugin.list(), []);
    await assert.rejects(plugin.remove('vm1-vda'), { code: 'volume-not-found' });
  });
});
