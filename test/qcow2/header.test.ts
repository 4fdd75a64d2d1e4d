import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { parseBitmapDirectory, parseQcow2Header, Qcow2HeaderError, readQcow2Header } from '../../src/qcow2/header.js';
import { execaRunner } from '../../src/util/runner.js';
import { GiB } from '../../src/util/sizes.js';

describe('qcow2 header', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'tideline-qcow2-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads virtual size, cluster size and backing file of images qemu-img made', async () => {
    const base = path.join(dir, 'base.qcow2');
    const top = path.join(dir, 'top.qcow2');
    await execaRunner('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=128k', base, String(3 * GiB)]);
    await execaRunner('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top]);
    assert.deepEqual(await readQcow2Header(base), { version: 3, virtualBytes: 3 * GiB, clusterBytes: 128 * 1024, backingFile: undefined });
    assert.deepEqual(await readQcow2Header(top), { version: 3, virtualBytes: 3 * GiB, clusterBytes: 64 * 1024, backingFile: base });
  });

  it('refuses what is not a qcow2 image, naming it', async () => {
    assert.throws(() => parseQcow2Header(new Uint8Array(512), '/dev/vg/raw'), /\/dev\/vg\/raw has no qcow2 magic/);
    assert.throws(() => parseQcow2Header(new Uint8Array(10), '/x'), /too short/);
    await assert.rejects(readQcow2Header(path.join(dir, 'absent')), (error: unknown) => error instanceof Qcow2HeaderError && /cannot open/.test(error.message));
  });

  it('property: any bytes give a header or a Qcow2HeaderError, never anything else', () => {
    const withMagic = fc.uint8Array({ minLength: 0, maxLength: 600 }).map((bytes) => {
      if (bytes.length >= 8) bytes.set([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3]);
      // A valid cluster size, so that the extensions behind the header are reached too.
      if (bytes.length >= 24) bytes.set([0, 0, 0, 16], 20);
      return bytes;
    });
    fc.assert(
      fc.property(fc.oneof(withMagic, fc.uint8Array({ maxLength: 200 })), (bytes) => {
        try {
          const header = parseQcow2Header(bytes, 'fuzz');
          assert.ok(header.clusterBytes >= 512 && header.clusterBytes <= 2 * 1024 * 1024);
        } catch (error) {
          assert.ok(error instanceof Qcow2HeaderError, String(error));
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('property: a bitmap directory of any bytes gives granularities or a Qcow2HeaderError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 0, max: 20 }), (bytes, count) => {
        try {
          const granularities = parseBitmapDirectory(bytes, count, 'fuzz');
          assert.equal(granularities.length, count);
        } catch (error) {
          assert.ok(error instanceof Qcow2HeaderError, String(error));
        }
      }),
      { numRuns: 1000 },
    );
  });
});
