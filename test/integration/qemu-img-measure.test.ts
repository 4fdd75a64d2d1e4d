import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { qcow2BitmapBytes, qcow2FullyAllocatedBytes } from '../../src/monitor/qcow2-capacity.js';
import { readQcow2Header } from '../../src/qcow2/header.js';
import { execaRunner } from '../../src/util/runner.js';
import { layerMergeBytes } from '../../src/chain/measure.js';
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

  it('agrees on what persistent dirty bitmaps take, read from the image itself (header extension and bitmap directory)', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'tideline-measure-'));
    try {
      for (const [size, cluster, granularities] of [[10 * GiB, 65536, ['64k', '512k', '4k']], [3 * GiB + 7 * MiB, 2 * MiB, ['64k']], [100 * GiB, 65536, ['1M', '16k']]] as const) {
        const image = path.join(dir, `bitmaps-${size}-${cluster}.qcow2`);
        await execaRunner('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${cluster}`, image, String(size)]);
        for (const [index, granularity] of granularities.entries()) await execaRunner('qemu-img', ['bitmap', '--add', '-g', granularity, image, `b${index}`]);
        // measure sizes a new image: give it the same cluster size.
        const measured = JSON.parse((await execaRunner('qemu-img', ['measure', '--output=json', '-O', 'qcow2', '-o', `cluster_size=${cluster}`, image])).stdout) as { bitmaps: number };
        const header = await readQcow2Header(image);
        assert.equal(header.bitmapGranularities?.length, granularities.length);
        assert.equal(qcow2BitmapBytes(header.virtualBytes, header.clusterBytes, header.bitmapGranularities!, header.bitmapDirectory!.bytes), measured.bitmaps, `${size} bytes, ${cluster}-byte clusters, granularities ${granularities.join(' ')}`);
      }
      const plain = path.join(dir, 'plain.qcow2');
      await execaRunner('qemu-img', ['create', '-q', '-f', 'qcow2', plain, String(GiB)]);
      assert.equal((await readQcow2Header(plain)).bitmapDirectory, undefined);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

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

  it("measures what a layer brings into a block commit: its own data and tables, not its backing file's, not its volume's size", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'tideline-measure-'));
    try {
      const base = path.join(dir, 'base.qcow2');
      const top = path.join(dir, 'top.qcow2');
      await execaRunner('qemu-img', ['create', '-q', '-f', 'qcow2', base, String(4 * GiB)]);
      await execaRunner('qemu-io', ['-c', `write -P 1 0 ${100 * MiB}`, base]);
      await execaRunner('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top]);
      await execaRunner('qemu-io', ['-c', `write -P 2 ${512 * MiB} ${30 * MiB}`, top]);
      const bytes = await layerMergeBytes(execaRunner, top);
      assert.ok(bytes >= 30 * MiB, `at least the 30 MiB the layer wrote: ${bytes}`);
      assert.ok(bytes < 32 * MiB, `not the backing file's 100 MiB, nor the image's full size: ${bytes}`);
      await assert.rejects(layerMergeBytes(execaRunner, path.join(dir, 'absent.qcow2')));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
