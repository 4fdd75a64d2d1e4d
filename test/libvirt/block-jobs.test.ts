import assert from 'node:assert/strict';
import { chainVolumes, completedBlockJob } from '../../src/libvirt/block-jobs.js';
import { parseDomainXml } from '../../src/libvirt/domain-xml.js';
import type { StoragePlugin } from '../../plugins/types.js';

describe('block jobs an administrator runs with virsh', () => {
  it('reads a completed job and its disk from the block-job-2 detail, and nothing else', () => {
    assert.deepEqual(completedBlockJob('Block Pull for vda completed'), { job: 'Block Pull', target: 'vda' });
    assert.deepEqual(completedBlockJob('Active Block Commit for sdb completed'), { job: 'Active Block Commit', target: 'sdb' });
    assert.equal(completedBlockJob('Block Pull for vda failed'), undefined);
    assert.equal(completedBlockJob('Block Copy for vda ready'), undefined);
    assert.equal(completedBlockJob('Block Pull for vda canceled'), undefined);
    assert.equal(completedBlockJob(''), undefined);
  });

  it("lists the storage domain's volumes of a disk's chain, top down, skipping layers elsewhere", async () => {
    const xml = `<domain><name>web</name><devices><disk type='block' device='disk'><driver name='qemu' type='qcow2'/>
      <source dev='/dev/tl/web-vda-snap' index='3'/>
      <backingStore type='file' index='2'><format type='qcow2'/><source file='/var/lib/images/golden.qcow2'/>
        <backingStore type='block' index='1'><format type='qcow2'/><source dev='/dev/tl/web-vda'/><backingStore/></backingStore>
      </backingStore><target dev='vda' bus='virtio'/></disk></devices></domain>`;
    const disk = parseDomainXml(xml).disks[0]!;
    const plugin = { volumeForPath: async (path: string) => (path.startsWith('/dev/tl/') ? path.slice('/dev/tl/'.length) : undefined) } as unknown as StoragePlugin;
    assert.deepEqual(await chainVolumes(disk, plugin), ['web-vda-snap', 'web-vda']);
  });
});
