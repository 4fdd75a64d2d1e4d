import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { detachLoopsUnder, initLoopDomain, LoopPlugin } from '../../plugins/loop/index.js';
import { DomainFullError, InvalidVolumeNameError, ShrinkRefusedError, VolumeExistsError, VolumeNotFoundError } from '../../plugins/errors.js';
import { execaRunner } from '../../src/util/runner.js';
import { MiB } from '../../src/util/sizes.js';

describe('loop plugin with real loop devices', function () {
  this.timeout(30_000);
  let dir: string;
  let plugin: LoopPlugin;

  beforeEach(async () => {
    dir = await mkdtemp('/var/tmp/tideline-loop-');
    await initLoopDomain(path.join(dir, 'domain'), 1024 * MiB);
    plugin = await LoopPlugin.open(path.join(dir, 'domain'), execaRunner);
  });
  afterEach(async () => {
    await detachLoopsUnder(execaRunner, dir);
    await rm(dir, { recursive: true, force: true });
  });

  it('creates, attaches, extends live, refreshes and removes a volume', async () => {
    const created = await plugin.create('vm1-vda', 100 * MiB, { vm: 'vm1' });
    assert.equal(created.sizeBytes, 100 * MiB);
    const device = await plugin.activate('vm1-vda');
    assert.match(device, /^\/dev\/loop\d+$/);
    assert.equal(await plugin.activate('vm1-vda'), device, 'activation is idempotent');
    assert.equal(await plugin.volumeForPath(device), 'vm1-vda');
    assert.equal(await plugin.volumeForPath('/dev/sda'), undefined);

    await plugin.extend('vm1-vda', 300 * MiB + 1);
    assert.equal((await plugin.describe('vm1-vda')).sizeBytes, 301 * MiB, 'rounded up to whole extents');
    assert.equal(await plugin.refresh('vm1-vda'), 301 * MiB, 'the loop device sees the new size');
    assert.equal(await plugin.extend('vm1-vda', 200 * MiB).then(() => 'extended', (error) => error.constructor.name), 'ShrinkRefusedError');
    assert.equal((await plugin.extend('vm1-vda', 301 * MiB)).sizeBytes, 301 * MiB, 'same size again changes nothing');
    assert.deepEqual((await plugin.list()).map((volume) => [volume.name, volume.tags]), [['vm1-vda', { vm: 'vm1' }]]);

    await plugin.remove('vm1-vda');
    assert.deepEqual(await plugin.list(), []);
    assert.equal(await plugin.volumeForPath(device), undefined);
  });

  it('refuses what would lose data or overcommit the domain, with typed errors', async () => {
    await plugin.create('a', 600 * MiB);
    await assert.rejects(plugin.create('a', MiB), VolumeExistsError);
    await assert.rejects(plugin.create('b', 500 * MiB), DomainFullError);
    await assert.rejects(plugin.extend('a', 1100 * MiB), (error: unknown) => error instanceof DomainFullError && /needs 524288000 more/.test(error.message));
    await assert.rejects(plugin.extend('a', MiB), ShrinkRefusedError);
    await assert.rejects(plugin.describe('missing'), VolumeNotFoundError);
    await assert.rejects(plugin.create('../escape', MiB), InvalidVolumeNameError);
    assert.equal(await plugin.freeBytes(), 424 * MiB);
    assert.equal((await plugin.describe('a')).sizeBytes, 600 * MiB, 'nothing changed');
  });
});
