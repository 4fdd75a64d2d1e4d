import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { growLoopDomain, initLoopDomain, LoopPlugin } from '../../plugins/loop/index.js';
import { DomainFullError, ShrinkRefusedError, VolumeNotFoundError } from '../../plugins/errors.js';
import { execaRunner } from '../../src/util/runner.js';
import { MiB } from '../../src/util/sizes.js';

/**
 * The loop domain's extensions asked at once (the SPM serves many hosts
 * together) go through together; these check that doing so keeps the rules of
 * one at a time: space given in the order asked, nothing shrunk, nothing
 * counted twice, and changes made by another process seen.
 */
describe('loop plugin: extensions asked at once', function () {
  this.timeout(20_000);
  let dir: string;
  let domain: string;
  let plugin: LoopPlugin;

  beforeEach(async () => {
    dir = await mkdtemp('/var/tmp/tideline-loop-extend-');
    domain = path.join(dir, 'domain');
    await initLoopDomain(domain, 100 * MiB);
    plugin = await LoopPlugin.open(domain, execaRunner);
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('grows every volume asked for at once, and counts the space they took', async () => {
    for (let index = 0; index < 10; index += 1) await plugin.create(`v${index}`, 5 * MiB);
    const grown = await Promise.all(Array.from({ length: 10 }, (_, index) => plugin.extend(`v${index}`, 10 * MiB)));
    assert.deepEqual(grown.map((volume) => volume.sizeBytes), new Array(10).fill(10 * MiB));
    assert.equal(await plugin.freeBytes(), 0);
    await assert.rejects(plugin.extend('v0', 11 * MiB), DomainFullError);
  });

  it('gives the last free space to the first asked and refuses the rest, changing nothing for them', async () => {
    for (let index = 0; index < 4; index += 1) await plugin.create(`v${index}`, 10 * MiB);
    const outcomes = await Promise.allSettled(Array.from({ length: 4 }, (_, index) => plugin.extend(`v${index}`, 30 * MiB)));
    assert.deepEqual(outcomes.map((outcome) => outcome.status), ['fulfilled', 'fulfilled', 'fulfilled', 'rejected']);
    assert.ok((outcomes[3] as PromiseRejectedResult).reason instanceof DomainFullError);
    assert.equal((await plugin.describe('v3')).sizeBytes, 10 * MiB);
    assert.equal(await plugin.freeBytes(), 0);
  });

  it('takes a volume asked for twice at once in the order asked: never shrinks it', async () => {
    await plugin.create('a', 10 * MiB);
    const [first, smaller, larger] = await Promise.allSettled([plugin.extend('a', 20 * MiB), plugin.extend('a', 15 * MiB), plugin.extend('a', 30 * MiB)]);
    assert.equal(first.status === 'fulfilled' && first.value.sizeBytes, 20 * MiB);
    assert.ok(smaller.status === 'rejected' && smaller.reason instanceof ShrinkRefusedError);
    assert.equal(larger.status === 'fulfilled' && larger.value.sizeBytes, 30 * MiB);
    assert.equal((await plugin.describe('a')).sizeBytes, 30 * MiB);
    assert.equal(await plugin.freeBytes(), 70 * MiB);
  });

  it('refuses only the missing volume of those asked together', async () => {
    await plugin.create('a', 10 * MiB);
    const [missing, present] = await Promise.allSettled([plugin.extend('gone', 20 * MiB), plugin.extend('a', 20 * MiB)]);
    assert.ok(missing.status === 'rejected' && missing.reason instanceof VolumeNotFoundError);
    assert.equal(present.status === 'fulfilled' && present.value.sizeBytes, 20 * MiB);
  });

  it('sees tags, volumes and capacity another process changed, right away and long after', async () => {
    await plugin.create('a', 10 * MiB, { owner: 'one' });
    assert.equal((await plugin.describe('a')).tags.owner, 'one');
    const other = await LoopPlugin.open(domain, execaRunner);
    for (const pauseMs of [0, 200]) {
      // 0: within the file system's clock tick of the last change; 200: long after, when what was read is kept.
      await new Promise((resolve) => setTimeout(resolve, pauseMs));
      const owner = `owner-after-${pauseMs}`;
      await other.setTag('a', 'owner', owner);
      assert.equal((await plugin.describe('a')).tags.owner, owner);
      assert.equal((await plugin.extend('a', (pauseMs === 0 ? 20 : 30) * MiB)).tags.owner, owner);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
    await other.create('b', 30 * MiB);
    assert.equal(await plugin.freeBytes(), 40 * MiB);
    await new Promise((resolve) => setTimeout(resolve, 200));
    await growLoopDomain(domain, 400 * MiB);
    assert.equal(await plugin.freeBytes(), 340 * MiB);
  });
});
