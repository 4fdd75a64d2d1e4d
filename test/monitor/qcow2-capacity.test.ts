import assert from 'node:assert/strict';
import fc from 'fast-check';
import { qcow2FullyAllocatedBytes } from '../../src/monitor/qcow2-capacity.js';
import { GiB, MiB } from '../../src/util/sizes.js';

describe('qcow2 fully allocated size', () => {
  it('matches figures qemu-img measure gives for 64 KiB clusters', () => {
    // From `qemu-img measure -O qcow2 --size N` (QEMU 7.2); the integration test re-checks live.
    assert.equal(qcow2FullyAllocatedBytes(4 * GiB), 4_295_884_800);
    assert.equal(qcow2FullyAllocatedBytes(1 * GiB), 1_074_135_040);
  });

  it('is a little more than the virtual size, far less than oVirt\'s 10 %', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 16 * 1024 }), (gib) => {
        const virtual = gib * GiB;
        const full = qcow2FullyAllocatedBytes(virtual);
        assert.ok(full > virtual);
        assert.ok(full < virtual * 1.01 + 2 * MiB, `${full} for ${virtual}`);
        assert.equal(full % (64 * 1024), 0, 'whole clusters');
      }),
    );
  });

  it('grows with the virtual size', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 40 }), fc.integer({ min: 1, max: 2 ** 30 }), (size, more) => {
        assert.ok(qcow2FullyAllocatedBytes(size + more) >= qcow2FullyAllocatedBytes(size));
      }),
    );
  });
});

describe('driveCapBytes', () => {
  it('rounds the image cap up to whole extents and honours a lower admin limit, at least one extent', async () => {
    const { driveCapBytes, qcow2FullyAllocatedBytes } = await import('../../src/monitor/qcow2-capacity.js');
    const extent = 128 * 1024 * 1024;
    const image = qcow2FullyAllocatedBytes(4 * 1024 ** 3);
    assert.equal(driveCapBytes(4 * 1024 ** 3, undefined, extent), Math.ceil(image / extent) * extent);
    assert.equal(driveCapBytes(4 * 1024 ** 3, 65536, extent, 1000 * 1024 * 1024), 7 * extent);
    assert.equal(driveCapBytes(4 * 1024 ** 3, 65536, extent, 1), extent);
  });
});
