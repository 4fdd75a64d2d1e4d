import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
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

  it('agrees for a layer with a backing file (a snapshot top, a template clone): the backing file adds nothing to the layer\'s cap', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'tideline-measure-'));
    try {
      const base = path.join(dir, 'base.qcow2');
      const top = path.join(dir, 'top.qcow2');
      await execaRunner('qemu-img', ['create', '-q', '-f', 'qcow2', base, String(4 * GiB)]);
      await execaRunner('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top]);
      // Measured as a layer that keeps its backing file, the way it is used.
      const { stdout } = await execaRunner('qemu-img', ['measure', '--output=json', '-O', 'qcow2', '-o', `backing_file=${base},backing_fmt=qcow2`, top]);
      assert.equal(qcow2FullyAllocatedBytes(4 * GiB, 65536), (JSON.parse(stdout) as { 'fully-allocated': number })['fully-allocated']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
