import assert from 'node:assert/strict';
import path from 'node:path';
import { execa } from 'execa';
import { MiB } from '../../src/util/sizes.js';
import { ClusterWorld } from './helpers/cluster-world.js';
import { until } from './helpers/watch.js';
import { builtCli } from './helpers/built-cli.js';

/**
 * `tideline snapshot create --qmp` on a plain QEMU (no libvirt) whose guest
 * writes: the SPM creates the new top, QEMU puts it on top of the drive with
 * blockdev-snapshot through its admin QMP socket, and the agent, connected to
 * the VM's other QMP socket, follows the new top.
 */
const WRITE_MIB = 640;
/**
 * The guest must still be writing when the snapshot lands, or the new top has
 * nothing to grow for: a faster machine once wrote all 640 MiB before the
 * snapshot command ran. At this cap the writes after the trigger take ~20 s.
 */
const WRITE_CAP_BYTES_PER_SECOND = 20 * MiB;
const FOLLOWED = "the disk's active layer changed (snapshot or block commit); watching the new top";

describe('real QEMU: live snapshot of a plain QEMU VM onto a new thin volume', function () {
  this.timeout(8 * 60_000);
  let cluster: ClusterWorld;

  beforeEach(async () => {
    cluster = await ClusterWorld.create(4);
  });
  afterEach(async () => {
    await cluster.dispose();
  });

  it('switches the drive onto the new top with blockdev-snapshot: zero pauses, the old top stops growing, data intact', async () => {
    const world = cluster.lab;
    const spm = cluster.spm(1, '2');
    await spm.waitFor('acting as SPM', 30_000);
    const vm = await world.startVm({ name: 'plain', writeMib: WRITE_MIB });
    await vm.throttleWrites(WRITE_CAP_BYTES_PER_SECOND);
    const socket = path.join(cluster.dir, 'agent.sock');
    const agent = cluster.start('agent', [
      'agent', '--qmp', `plain=${vm.qmpSocket}`, '--domain', world.workspace.domainDir, '--mailbox', cluster.mailboxPath, '--host-id', '2',
      '--chunk', '64M', '--free-target', '64M', '--poll', '0.5', '--status-file', path.join(cluster.dir, 'status.json'), '--control-socket', socket,
    ]);
    await agent.waitFor('watching thin drive', 60_000);
    await until(() => vm.progress.writtenMib >= 160, 180_000, () => `the guest to write 160 MiB (at ${vm.progress.writtenMib})`);

    const snapshot = await execa('node', [builtCli(), 'snapshot', 'create', 'plain', '--qmp', vm.adminSocket, '--disk', 'vda', '--size', '96M', '--socket', socket, '--domain', world.workspace.domainDir], { reject: false, timeout: 120_000 });
    assert.equal(snapshot.exitCode, 0, snapshot.stderr);
    const top = /now writes to (\S+) /.exec(snapshot.stdout)?.[1];
    assert.ok(top, snapshot.stdout);
    const baseSizeAtSnapshot = (await world.plugin.describe(vm.volume)).sizeBytes;
    assert.equal(vm.progress.writeSeconds, undefined, `the guest finished writing before the snapshot landed (${snapshot.stdout.trim()}); the test proves nothing this way`);
    await agent.waitFor(FOLLOWED, 30_000);

    let timer: NodeJS.Timeout | undefined;
    const progress = await Promise.race([
      vm.finished(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`the guest did not finish within 4 minutes (written ${vm.progress.writtenMib} MiB); is it paused? agent:\n${agent.transcript()}`)), 240_000);
      }),
    ]).finally(() => clearTimeout(timer));
    assert.equal(progress.errors.length, 0, `guest errors: ${progress.errors.join('; ')}`);
    assert.equal(progress.result?.bad, 0, 'every unit read back through the chain is intact');
    assert.equal(progress.result?.units, WRITE_MIB / 16);
    const servedTop = spm.logged('request served').filter((event) => event.volume === top && event.operation === 'Extend');
    assert.ok(servedTop.length > 0, 'the new top grew through the SPM');
    assert.equal((await world.plugin.describe(vm.volume)).sizeBytes, baseSizeAtSnapshot, 'the old top did not grow after the snapshot');
    assert.equal(agent.logged('VM paused: a write found no space; extending, then resuming').length, 0, 'no pause');
    process.stdout.write(`      plain QEMU snapshot during a ${WRITE_MIB} MiB write: pauses 0; new top extended ${servedTop.length} times; old top stayed ${baseSizeAtSnapshot / MiB} MiB; data verified: true\n`);
  });
});
