import assert from 'node:assert/strict';
import path from 'node:path';
import { execa } from 'execa';
import { readStatus } from '../../src/agent/status-file.js';
import { MiB } from '../../src/util/sizes.js';
import { ClusterWorld } from './helpers/cluster-world.js';
import { until } from './helpers/watch.js';
import { builtCli } from './helpers/built-cli.js';

/**
 * The storage domain runs full while a guest writes: the SPM refuses with
 * domain-full, the VM stays paused with that reason in `tideline status`, and
 * the moment the admin adds space (`loop-domain grow`, as pvresize would) the
 * agent's next retry extends and resumes it. Nothing restarts.
 */
const INITIAL_MIB = 128;
const WRITE_MIB = 512;

describe('real QEMU: a full storage domain, then space added', function () {
  this.timeout(8 * 60_000);
  let cluster: ClusterWorld;

  before(async () => {
    // Room for the VM's first volume and two extensions, not for the whole write.
    cluster = await ClusterWorld.create(4, (INITIAL_MIB + 160) * MiB);
  });
  after(async () => {
    await cluster?.dispose();
  });

  it('keeps the VM paused with a clear status while the domain is full, and resumes it once space is added', async () => {
    const spm = cluster.spm(1, '2');
    await spm.waitFor('acting as SPM', 30_000);
    const vm = await cluster.lab.startVm({ name: 'full', writeMib: WRITE_MIB, initialBytes: INITIAL_MIB * MiB });
    const statusFile = path.join(cluster.dir, 'status.json');
    const agent = cluster.start('agent', [
      'agent', '--qmp', `full=${vm.qmpSocket}`, '--domain', cluster.lab.workspace.domainDir, '--mailbox', cluster.mailboxPath, '--host-id', '2',
      '--chunk', '64M', '--free-target', '64M', '--poll', '0.5', '--status-file', statusFile, '--control-socket', path.join(cluster.dir, 'agent.sock'),
    ]);
    await agent.waitFor('watching thin drive', 60_000);

    const vmStatus = async () => (await readStatus(statusFile).catch(() => undefined))?.vms.find((candidate) => candidate.vm === 'full');
    await until(async () => (await vmStatus())?.drives[0]?.error?.code === 'domain-full' && (await vmStatus())?.pausedForNoSpace === true, 180_000, 'the VM to pause on a full domain');
    const writtenWhenFull = vm.progress.writtenMib;
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    assert.equal((await vmStatus())?.pausedForNoSpace, true, 'it stays paused while the domain is full');
    assert.equal(vm.progress.writtenMib, writtenWhenFull, 'the guest made no progress');
    const shown = await execa('node', [builtCli(), 'status', '--file', statusFile], { reject: false });
    assert.equal(shown.exitCode, 1, 'status exits 1 while a drive is in error');
    assert.match(shown.stdout, /error: domain-full/);
    assert.match(shown.stdout, /no free space left|add space/i);

    const grown = await execa('node', [builtCli(), 'loop-domain', 'grow', cluster.lab.workspace.domainDir, '--capacity', '2G'], { reject: false });
    assert.equal(grown.exitCode, 0, grown.stderr);
    const grewAt = Date.now();
    await until(async () => (await vmStatus())?.pausedForNoSpace === false, 120_000, 'the VM to resume after space was added');
    const resumedAfterMs = Date.now() - grewAt;
    const progress = await vm.finished();
    assert.equal(progress.errors.length, 0, progress.errors.join('; '));
    assert.equal(progress.result?.bad, 0, 'every unit read back intact');
    assert.equal(progress.result?.units, WRITE_MIB / 16);
    const refusals = spm.logged('request refused').filter((event) => event.status === 'domain-full').length;
    assert.ok(refusals >= 1);
    const shrunk = await execa('node', [builtCli(), 'loop-domain', 'grow', cluster.lab.workspace.domainDir, '--capacity', '1G'], { reject: false });
    assert.equal(shrunk.exitCode, 1);
    assert.match(shrunk.stderr, /only grows/);
    process.stdout.write(`      full domain: paused at ${writtenWhenFull} MiB written, ${refusals} domain-full refusals, resumed ${(resumedAfterMs / 1000).toFixed(1)} s after space was added; data verified: true\n`);
  });
});
