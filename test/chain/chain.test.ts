import assert from 'node:assert/strict';
import { externalSnapshotXml, snapshotVolumeName } from '../../src/chain/snapshot-xml.js';
import { layersAbove } from '../../src/chain/commit.js';
import { libvirtSnapshotVm, snapshotDomain, SnapshotError } from '../../src/chain/snapshot.js';
import { volumeTree } from '../../src/chain/volume-tree.js';
import { Virsh } from '../../src/libvirt/virsh.js';
import type { StoragePlugin, VolumeInfo } from '../../plugins/types.js';
import { acceptedResult, type Runner } from '../../src/util/runner.js';

const volume = (name: string, parent?: string): VolumeInfo => ({ name, sizeBytes: 1, tags: parent ? { parent } : {} });

describe('volume chains (pure parts)', () => {
  it('lists chains as a tree: parents first, children indented, orphans and cycles still shown', () => {
    const rows = volumeTree([volume('web-b', 'tpl'), volume('tpl'), volume('web-a', 'tpl'), volume('web-a-snap', 'web-a'), volume('lost', 'gone'), volume('x', 'y'), volume('y', 'x')]);
    assert.deepEqual(rows.map((row) => `${row.depth}:${row.volume.name}`), ['0:lost', '0:tpl', '1:web-a', '2:web-a-snap', '1:web-b', '0:x', '1:y']);
  });

  it('names a new top after domain, disk and time, within the volume name rules', () => {
    assert.equal(snapshotVolumeName('web01', 'vda', new Date('2026-11-25T18:52:54Z')), 'web01-vda-20261125185254');
    const long = snapshotVolumeName(`${'n'.repeat(200)} odd/name`, 'vda', new Date('2026-11-25T18:52:54Z'));
    assert.ok(long.length <= 128 && /^[A-Za-z0-9_+][A-Za-z0-9_.+-]*$/.test(long), long);
  });

  it('switches only the named disks onto block devices, leaving the others alone', () => {
    const xml = externalSnapshotXml([{ target: 'vda', devicePath: "/dev/vg/it's" }], ['vdb']);
    assert.match(xml, /<disk name='vda' snapshot='external' type='block'>\s*<driver type='qcow2'\/>\s*<source dev='\/dev\/vg\/it&apos;s'\/>/);
    assert.match(xml, /<disk name='vdb' snapshot='no'\/>/);
  });
});

describe('layersAbove (what a commit merges)', () => {
  const chain = [volume('base'), volume('mid', 'base'), volume('top', 'mid'), volume('other')];
  it('merges the top into its parent by default, or every layer down to a named base', () => {
    assert.deepEqual(layersAbove(chain, 'top', undefined), { merged: ['top'], base: 'mid' });
    assert.deepEqual(layersAbove(chain, 'top', 'base'), { merged: ['top', 'mid'], base: 'base' });
  });
  it('refuses a base that is not below the top, and a top without a parent', () => {
    assert.throws(() => layersAbove(chain, 'top', 'other'), /other is not below top in its chain \(top -> mid -> base ends there\)/);
    assert.throws(() => layersAbove(chain, 'base', undefined), /base has no parent volume/);
  });
});

describe('snapshotDomain', () => {
  const domainXml = `<domain><name>web</name><devices>
    <disk type='block' device='disk'><driver name='qemu' type='qcow2' error_policy='stop'/><source dev='/dev/sd1/web-vda' index='1'/><target dev='vda'/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/iso/scratch.img'/><target dev='vdb'/></disk>
  </devices></domain>`;

  function world(options: { snapshotFails?: boolean } = {}) {
    const calls: string[] = [];
    const run: Runner = async (_command, args) => {
      const verb = args.find((arg) => ['dumpxml', 'snapshot-create'].includes(arg))!;
      calls.push(verb);
      if (verb === 'snapshot-create' && options.snapshotFails) return acceptedResult('virsh', args, { stdout: '', stderr: 'error: unsupported configuration', exitCode: 1 });
      return { stdout: verb === 'dumpxml' ? domainXml : '', stderr: '', exitCode: 0 };
    };
    const plugin = {
      domain: 'sd1',
      volumeForPath: async (path: string) => (path.startsWith('/dev/sd1/') ? path.slice('/dev/sd1/'.length) : undefined),
      activate: async (name: string) => { calls.push(`activate ${name}`); return `/dev/sd1/${name}`; },
      deactivate: async (name: string) => void calls.push(`deactivate ${name}`),
    } as unknown as StoragePlugin;
    const dependencies = {
      vm: libvirtSnapshotVm(new Virsh(run), 'web'),
      plugin,
      createChild: async (name: string, parent: string) => { calls.push(`create ${name} on ${parent}`); return 1; },
      remove: async (name: string) => void calls.push(`remove ${name}`),
      now: () => new Date('2026-11-25T18:52:54Z'),
    };
    return { calls, dependencies };
  }

  it('creates the new top through the SPM, activates it, then switches the domain', async () => {
    const { calls, dependencies } = world();
    const layers = await snapshotDomain(dependencies, { sizeBytes: 1 });
    assert.deepEqual(layers, [{ target: 'vda', parent: 'web-vda', volume: 'web-vda-20261125185254', devicePath: '/dev/sd1/web-vda-20261125185254' }]);
    assert.deepEqual(calls, ['dumpxml', 'create web-vda-20261125185254 on web-vda', 'activate web-vda-20261125185254', 'snapshot-create']);
  });

  it('gives the new volumes back when libvirt refuses, and names a disk that is not there or not ours', async () => {
    const failing = world({ snapshotFails: true });
    await assert.rejects(snapshotDomain(failing.dependencies, { sizeBytes: 1 }), (error: unknown) => error instanceof SnapshotError && /nothing changed \(new volumes removed\)/.test(error.message));
    assert.deepEqual(failing.calls.slice(-2), ['deactivate web-vda-20261125185254', 'remove web-vda-20261125185254']);
    const { dependencies } = world();
    await assert.rejects(snapshotDomain(dependencies, { targets: ['vdz'], sizeBytes: 1 }), /has no disk vdz \(its disks: vda, vdb\)/);
    await assert.rejects(snapshotDomain(dependencies, { targets: ['vdb'], sizeBytes: 1 }), /disk vdb of domain web is not on a volume of storage domain sd1/);
  });
});
