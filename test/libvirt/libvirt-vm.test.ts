import assert from 'node:assert/strict';
import { LibvirtVm } from '../../src/libvirt/libvirt-vm.js';
import { parseEventLine } from '../../src/libvirt/events.js';
import { Virsh } from '../../src/libvirt/virsh.js';
import type { Runner } from '../../src/util/runner.js';

/**
 * The domain's run state as libvirt 9.0 showed it on both hosts of a real
 * `virsh migrate --live` (test/integration/libvirt-migration.test.ts), replayed
 * through a runner that answers virsh from the recorded text.
 */
function scriptedVm(states: string[], blockErrors = 'vda: No errors found\n') {
  const asked: string[] = [];
  const run: Runner = async (_command, args) => {
    const verb = args.find((arg) => ['domstate', 'domblkerror', 'resume'].includes(arg))!;
    asked.push(verb);
    if (verb === 'domstate') return { stdout: states.shift() ?? 'running (unpaused)', stderr: '', exitCode: 0 };
    if (verb === 'domblkerror') return { stdout: blockErrors, stderr: '', exitCode: 0 };
    return { stdout: '', stderr: '', exitCode: 0 };
  };
  return { vm: new LibvirtVm('web', new Virsh(run), [{ target: 'vda', index: 1 }]), asked };
}

async function states(vm: LibvirtVm, count: number): Promise<string[]> {
  const seen: string[] = [];
  for (let index = 0; index < count; index += 1) seen.push(await vm.runState());
  return seen;
}

describe('LibvirtVm run state across a live migration', () => {
  it('destination: starting up, waiting for the incoming state, then running', async () => {
    const { vm } = scriptedVm(['paused (starting up)', 'paused (migrating)', 'paused (migrating)', 'running (migrated)']);
    assert.deepEqual(await states(vm, 4), ['starting', 'inmigrate', 'inmigrate', 'running']);
  });

  it('post-copy: the destination runs before the migration ended; the source\'s post-copy pauses, and a failed post-copy, are plain pauses', async () => {
    const destination = scriptedVm(['paused (migrating)', 'running (post-copy)', 'paused (I/O error)', 'running (unpaused)']);
    assert.deepEqual(await states(destination.vm, 4), ['inmigrate', 'postcopy', 'io-error', 'running']);
    const source = scriptedVm(['running (booted)', 'paused (post-copy)', 'paused (post-copy failed)']);
    assert.deepEqual(await states(source.vm, 3), ['running', 'paused', 'paused']);
    const failed = scriptedVm(['paused (migrating)', 'running (post-copy)', 'paused (post-copy failed)']);
    assert.deepEqual(await states(failed.vm, 3), ['inmigrate', 'postcopy', 'paused']);
  });

  it("source: the switch-over pause is not ours, and not an incoming migration", async () => {
    const { vm } = scriptedVm(['running (booted)', 'paused (migrating)']);
    assert.deepEqual(await states(vm, 2), ['running', 'paused']);
  });

  it('destination: a no-space pause that libvirt relabels "user" while finishing the migration is an I/O error pause', async () => {
    const { vm } = scriptedVm(['paused (migrating)', 'paused (user)'], 'vda: no space\n');
    assert.deepEqual(await states(vm, 2), ['inmigrate', 'io-error']);
  });

  it('restored from a save: "paused (migrating)" is the pause it was saved in (measured with libvirt 9.0), the I/O error pause only when the pause mark said so', async () => {
    const suspended = scriptedVm(['paused (migrating)', 'running (unpaused)']);
    suspended.vm.restored = true;
    assert.deepEqual(await states(suspended.vm, 2), ['paused', 'running']);
    const pausedForSpace = scriptedVm(['paused (migrating)', 'paused (migrating)', 'running (unpaused)', 'paused (migrating)']);
    pausedForSpace.vm.restored = true;
    pausedForSpace.vm.restoredPausedForSpace = true;
    assert.deepEqual(await states(pausedForSpace.vm, 4), ['io-error', 'io-error', 'running', 'paused'], 'once it ran, a later "paused (migrating)" is its own switch-over');
  });

  it('an administrator\'s suspend stays "paused", even with an old no-space error on the disk', async () => {
    const { vm, asked } = scriptedVm(['paused (migrating)', 'running (migrated)', 'paused (user)'], 'vda: no space\n');
    assert.deepEqual(await states(vm, 3), ['inmigrate', 'running', 'paused']);
    assert.ok(!asked.includes('domblkerror'));
    const notMigrated = scriptedVm(['running (booted)', 'paused (user)'], 'vda: no space\n');
    assert.deepEqual(await states(notMigrated.vm, 2), ['running', 'paused']);
  });

  it('a block-threshold event on a watched backing layer (vda[2]) is that layer\'s; on the active layer (vda[1]) the disk\'s; on an unwatched layer nobody\'s', () => {
    const vm = new LibvirtVm('web', new Virsh(async () => ({ stdout: '', stderr: '', exitCode: 0 })), [{ target: 'vda', index: 1 }, { target: 'vda[2]', index: undefined }]);
    const event = (index: number) => ({ kind: 'block-threshold' as const, domain: 'web', target: 'vda', index, path: '/dev/tl/x', thresholdBytes: 100, excessBytes: 5 });
    assert.deepEqual(vm.translate(event(2), () => undefined), { type: 'threshold', drive: 'vda[2]', highWaterAtLeast: 105 });
    assert.deepEqual(vm.translate(event(1), () => undefined), { type: 'threshold', drive: 'vda', highWaterAtLeast: 105 });
    const alone = new LibvirtVm('web', new Virsh(async () => ({ stdout: '', stderr: '', exitCode: 0 })), [{ target: 'vdb', index: 1 }]);
    assert.equal(alone.translate(event(3), () => undefined), undefined);
  });

  it('reads the lifecycle events of both hosts as recorded', () => {
    const source = [
      "2026-11-25 17:50:26.284+0000: event 'lifecycle' for domain 'tlmig': Suspended Migrated",
      "2026-11-25 17:50:28.419+0000: event 'lifecycle' for domain 'tlmig': Stopped Migrated",
    ].map((line) => parseEventLine(line));
    const destination = [
      "2026-11-25 17:50:25.973+0000: event 'lifecycle' for domain 'tlmig': Started Migrated",
      "2026-11-25 17:50:26.975+0000: event 'lifecycle' for domain 'tlmig': Resumed Migrated",
    ].map((line) => parseEventLine(line));
    const cancelledOnDestination = parseEventLine("2026-11-25 17:52:15.478+0000: event 'lifecycle' for domain 'tlmig': Stopped Failed");
    assert.deepEqual(source.map((event) => event?.kind === 'lifecycle' && `${event.event} ${event.detail}`), ['Suspended Migrated', 'Stopped Migrated']);
    const { vm } = scriptedVm([]);
    assert.deepEqual(destination.map((event) => vm.translate(event!, () => undefined)), [undefined, { type: 'resumed' }]);
    assert.deepEqual(source.map((event) => vm.translate(event!, () => undefined)), [{ type: 'stopped' }, undefined]);
    assert.equal(cancelledOnDestination?.kind === 'lifecycle' && cancelledOnDestination.event, 'Stopped');
  });
});
