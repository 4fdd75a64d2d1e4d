import assert from 'node:assert/strict';
import { qcow2FullyAllocatedBytes } from '../../src/monitor/qcow2-capacity.js';
import { execaRunner } from '../../src/util/runner.js';
import { GiB, MiB } from '../../src/util/sizes.js';

describe('qcow2 cap against real qemu-img measure', function () {
  this.timeout(30_000);
  for (const [size, cluster] of [[1 * GiB, 65536], [4 * GiB, 65536], [100 * GiB, 65536], [3 * GiB + 7 * MiB, 65536], [20 * GiB, 2 * MiB], [8 * GiB, 4096]] as const) {
    it(`agrees for ${size} bytes with ${cluster}-byte clusters`, async () => {
      const { stdout } = await execaRunner('qemu-img', ['measure', '--output=json', '-O', 'qcow2', '-o', `cluster_size=${cluster}`, '--size', String(size)]);
      const measured = JSON.parse(stdout) as { 'fully-allocated': number };
      assert.equal(qcow2FullyAllocatedBytes(size, cluster), measured['fully-allocated']);
    });
  }
});
