import assert from 'node:assert/strict';
import { mkdtemp, readFile, readlink, rm } from 'node:fs/promises';
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

  it('gives each host view its own device: a refresh on one host changes no other host\'s size', async () => {
    const domain = path.join(dir, 'domain');
    const [one, two] = await Promise.all(['1', '2'].map((hostView) => LoopPlugin.open(domain, execaRunner, { hostView })));
    await one!.create('vm1-vda', 64 * MiB);
    const onOne = await one!.activate('vm1-vda');
    const onTwo = await two!.activate('vm1-vda');
    assert.equal(onOne, path.join(domain, 'hosts', '1', 'vm1-vda'));
    assert.equal(onTwo, path.join(domain, 'hosts', '2', 'vm1-vda'));
    assert.equal(await one!.activate('vm1-vda'), onOne, 'activation is idempotent');
    assert.notEqual(await readlink(onOne), await readlink(onTwo), 'two loop devices for one file');
    assert.equal(await one!.volumeForPath(onOne), 'vm1-vda');
    // Any host's directory names the volume, as /dev/VG/LV does on every host (a migrated domain keeps its XML's path).
    assert.equal(await two!.volumeForPath(onOne), 'vm1-vda');
    assert.equal(await two!.volumeForPath(path.join(domain, 'hosts', '..', 'vm1-vda')), undefined, 'only a host directory names a volume');

    await one!.extend('vm1-vda', 128 * MiB);
    assert.equal(await one!.refresh('vm1-vda'), 128 * MiB);
    assert.equal(await deviceBytes(onTwo), 64 * MiB, "host 2's view keeps the old size until host 2 refreshes");
    assert.equal(await two!.refresh('vm1-vda'), 128 * MiB);
    assert.equal(await deviceBytes(onTwo), 128 * MiB);

    await one!.deactivate('vm1-vda');
    assert.equal(await one!.isActive('vm1-vda'), false);
    assert.equal(await two!.isActive('vm1-vda'), true, "deactivating on host 1 leaves host 2's device");
    await one!.remove('vm1-vda');
    assert.equal(await two!.isActive('vm1-vda').catch((error: { code?: string }) => error.code), 'volume-not-found');
    await assert.rejects(LoopPlugin.open(domain, execaRunner, { hostView: '../x' }), /host view name/);
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

async function deviceBytes(link: string): Promise<number> {
  const device = path.basename(await readlink(link));
  return Number((await readFile(`/sys/block/${device}/size`, 'utf8')).trim()) * 512;
}
