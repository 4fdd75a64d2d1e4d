import assert from 'node:assert/strict';
import fc from 'fast-check';
import { changedLayers, describeDrives, protocolPath } from '../../src/qemu/block-info.js';

/** QMP replies as QEMU 7.2 gave them for the lab VM before and after a blockdev-snapshot. */
describe('QEMU block graph', () => {
  const before = {
    blocks: [{ qdev: '/machine/peripheral/vda/virtio-backend', inserted: { 'node-name': '#block154', file: '/dev/loop3', drv: 'qcow2', image: { 'virtual-size': 4294967296, 'cluster-size': 65536, format: 'qcow2' } } }],
    stats: [{ qdev: '/machine/peripheral/vda/virtio-backend', device: '', 'node-name': '#block154', parent: { 'node-name': '#block021', stats: { wr_highest_offset: 5 } } }],
  };
  const snapshotFile = 'json:{"backing": {"driver": "qcow2", "file": {"driver": "host_device", "filename": "/dev/loop3"}}, "driver": "qcow2", "file": {"driver": "host_device", "filename": "/dev/loop4"}}';

  it('names the block device under a json: pseudo-filename, and leaves anything else as it is', () => {
    assert.equal(protocolPath(snapshotFile), '/dev/loop4');
    assert.equal(protocolPath('json:{"driver":"qcow2","file.filename":"/dev/vg/lv"}'), '/dev/vg/lv');
    assert.equal(protocolPath('/dev/vg/lv'), '/dev/vg/lv');
    assert.equal(protocolPath('json:{broken'), 'json:{broken');
    fc.assert(fc.property(fc.string(), (text) => void protocolPath(`json:${text}`)));
  });

  it('sees the new top layer after a snapshot, and which drive changed', () => {
    const [drive] = describeDrives(before.blocks, before.stats);
    assert.equal(drive!.path, '/dev/loop3');
    const afterStats = [{ qdev: '/machine/peripheral/vda/virtio-backend', device: '', 'node-name': 'tl-vda-mwwilyn7', parent: { 'node-name': '#block065' } }];
    assert.deepEqual(changedLayers([drive!], before.stats), []);
    assert.deepEqual(changedLayers([drive!], afterStats), ['vda']);
    const [top] = describeDrives([{ qdev: '/machine/peripheral/vda/virtio-backend', inserted: { 'node-name': 'tl-vda-mwwilyn7', file: snapshotFile, drv: 'qcow2' } }], afterStats);
    assert.equal(top!.path, '/dev/loop4');
    assert.equal(top!.protocolNode, '#block065');
  });
});
