import assert from 'node:assert/strict';
import { DestinationViewStaleError } from '../../src/monitor/errors.js';
import type { DestinationWait, MigrationPeers } from '../../src/monitor/ports.js';
import { VmMonitor } from '../../src/monitor/vm-monitor.js';
import { sleep } from '../../src/util/clock.js';
import type { PolicySettings } from '../../src/monitor/policy.js';
import { silentLogger } from '../../src/log/logger.js';
import { MiB } from '../../src/util/sizes.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { FakeStorage, FakeVm } from '../helpers/fake-vm.js';

const POLICY: PolicySettings = { chunkBytes: 256 * MiB, freeTargetBytes: 128 * MiB, extentBytes: MiB, adaptive: false, adaptiveMaxChunkBytes: 4096 * MiB };
const POLL_MS = 2_000;
const INCOMING_REFRESH_MS = 1_000;

const DESTINATION_WAIT_MS = 5_000;

/** The other host as the shared storage shows it: what this host announced, and what a destination announces. */
class FakePeers implements MigrationPeers {
  announced: Array<[string, number | undefined]> = [];
  destinationViews = new Map<string, number>();
  constructor(private readonly clock: FakeClock) {}

  async announceIncomingView(volume: string, viewBytes: number | undefined): Promise<void> {
    this.announced.push([volume, viewBytes]);
  }

  async awaitDestinationView(volume: string, bytes: number, signal: AbortSignal): Promise<DestinationWait> {
    const started = this.clock.now();
    while ((this.destinationViews.get(volume) ?? 0) < bytes) {
      if (signal.aborted) return 'abandoned';
      if (this.clock.now() - started >= DESTINATION_WAIT_MS) throw new DestinationViewStaleError(volume, bytes, DESTINATION_WAIT_MS);
      await sleep(this.clock, 50);
    }
    return 'announced';
  }
}

/** One VM with one thin drive whose volume this host last saw at `seenBytes` while the storage has `storageBytes`. */
function setup(options: { runState: string; seenBytes?: number; storageBytes?: number; grewUnseen?: boolean }) {
  const clock = new FakeClock();
  const vm = new FakeVm();
  vm.runStateValue = options.runState;
  vm.highWater.set('vda', 0);
  const storage = new FakeStorage(clock);
  storage.sizes.set('vm1-vda', options.storageBytes ?? 512 * MiB);
  const peers = new FakePeers(clock);
  const monitor = new VmMonitor({
    vm: 'vm1',
    drives: [{ config: { drive: 'vda', volume: 'vm1-vda', capBytes: 4096 * MiB, policy: POLICY }, volumeBytes: options.seenBytes ?? 512 * MiB, grewUnseen: options.grewUnseen ?? false }],
    clock,
    extender: storage,
    control: vm,
    logger: silentLogger,
    pollIntervalMs: POLL_MS,
    incomingRefreshMs: INCOMING_REFRESH_MS,
    peers,
  });
  const events: string[] = [];
  monitor.on('arrived', (event) => events.push(`arrived ${event.armedMs}`));
  monitor.on('left', () => events.push('left'));
  monitor.on('resumed', () => events.push('resumed'));
  monitor.on('extended', (event) => events.push(`extended ${event.toBytes / MiB}`));
  monitor.on('migration-cancelled', () => events.push('migration cancelled'));
  return { clock, vm, storage, peers, monitor, events };
}

describe('VmMonitor during live migration', () => {
  it('told by libvirt that the VM migrates in, announces its views at once and on cadence, whatever libvirt answers meanwhile', async () => {
    // The failure this replaces: the destination missed "paused (migrating)" in a poll (here libvirt's state question fails and
    // then shows a plain pause), announced nothing, and the source cancelled the administrator's migration.
    const world = setup({ runState: 'paused' });
    let stateQuestions = 0;
    world.vm.runState = async () => {
      stateQuestions += 1;
      if (stateQuestions <= 3) throw new Error('libvirt did not answer');
      return 'paused';
    };
    world.monitor.handle({ type: 'migrating-in' });
    await world.monitor.start();
    assert.equal(world.monitor.status().migration, 'incoming');
    assert.deepEqual(world.peers.announced, [['vm1-vda', 512 * MiB]], 'announced before libvirt answered anything');
    world.storage.sizes.set('vm1-vda', 768 * MiB);
    for (let look = 0; look < 4; look += 1) await world.clock.advance(INCOMING_REFRESH_MS);
    assert.ok(world.peers.announced.some(([, view]) => view === 768 * MiB), 'the source\'s extension was announced although state questions failed');
    assert.equal(world.vm.thresholds.size, 0, 'nothing armed while it migrates in');
    assert.equal(world.monitor.status().migration, 'incoming', 'a pause is not an arrival');
    world.monitor.handle({ type: 'resumed' });
    await world.clock.advance(0);
    assert.equal(world.monitor.status().migration, null);
    assert.equal(world.vm.thresholds.get('vda'), 640 * MiB, 'armed on arrival');
    assert.deepEqual(world.peers.announced.at(-1), ['vm1-vda', undefined], 'the announcement withdrawn');
    world.monitor.stop();
  });


  it('on the destination, keeps refreshing while the VM migrates in, and arms nothing and asks nothing', async () => {
    const world = setup({ runState: 'inmigrate' });
    await world.monitor.start();
    assert.equal(world.monitor.status().migration, 'incoming');
    assert.equal(world.vm.thresholds.size, 0);
    world.storage.sizes.set('vm1-vda', 768 * MiB); // the source's agent extended meanwhile
    await world.clock.advance(INCOMING_REFRESH_MS);
    assert.equal(world.monitor.status().drives[0]!.volumeBytes, 768 * MiB);
    world.storage.sizes.set('vm1-vda', 1024 * MiB);
    await world.clock.advance(INCOMING_REFRESH_MS);
    assert.equal(world.monitor.status().drives[0]!.volumeBytes, 1024 * MiB);
    assert.deepEqual(world.storage.requests, []);
    assert.equal(world.vm.thresholds.size, 0);
    world.monitor.stop();
  });

  it('the moment the VM runs on the destination: refreshes once more and arms the threshold at once', async () => {
    const world = setup({ runState: 'inmigrate' });
    await world.monitor.start();
    world.storage.sizes.set('vm1-vda', 768 * MiB); // extended by the source just before switch-over
    world.vm.runStateValue = 'running';
    world.monitor.handle({ type: 'resumed' });
    await world.clock.advance(0);
    assert.equal(world.vm.thresholds.get('vda'), 640 * MiB, 'armed free-target below the size the source left');
    assert.deepEqual(world.events, ['arrived 0']);
    const status = world.monitor.status();
    assert.equal(status.migration, null);
    assert.equal(status.lastArrivalMs, 0);
    assert.deepEqual(world.storage.requests, []);
    world.monitor.stop();
  });

  it('a VM that arrives paused for an I/O error no drive reports (the source ran out of space): extends the drive near its end, then resumes it', async () => {
    const world = setup({ runState: 'inmigrate' });
    await world.monitor.start();
    world.vm.runStateValue = 'io-error'; // QEMU carried the run state over, not the drive's no-space status
    world.vm.highWater.set('vda', 511 * MiB);
    await world.clock.advance(INCOMING_REFRESH_MS);
    assert.deepEqual(world.storage.requests, [{ volume: 'vm1-vda', targetBytes: 768 * MiB }]);
    assert.equal(world.vm.resumes, 1);
    assert.deepEqual(world.events, ['extended 768', 'arrived 0', 'resumed']);
    assert.equal(world.monitor.status().pauses, 1);
    world.monitor.stop();
  });

  it('takes such a pause over once only: paused again with no drive reporting why, the VM is left to its administrator', async () => {
    const world = setup({ runState: 'inmigrate' });
    await world.monitor.start();
    world.vm.runStateValue = 'io-error';
    await world.clock.advance(INCOMING_REFRESH_MS);
    assert.equal(world.vm.resumes, 1, 'nothing near the end: resumed at once, the failed write is retried');
    assert.deepEqual(world.storage.requests, []);
    world.vm.runStateValue = 'io-error'; // the retried write failed again, for a reason that is not space
    await world.clock.advance(POLL_MS * 3);
    assert.equal(world.vm.resumes, 1);
    world.monitor.stop();
  });

  it('leaves an I/O error pause alone on a VM that arrived running', async () => {
    const world = setup({ runState: 'inmigrate' });
    await world.monitor.start();
    world.vm.runStateValue = 'running';
    world.monitor.handle({ type: 'resumed' });
    await world.clock.advance(0);
    world.vm.runStateValue = 'io-error';
    await world.clock.advance(POLL_MS * 3);
    assert.equal(world.vm.resumes, 0);
    world.monitor.stop();
  });

  it('arrives through the safety poll when the RESUME event was missed', async () => {
    const world = setup({ runState: 'inmigrate' });
    await world.monitor.start();
    world.vm.runStateValue = 'running';
    await world.clock.advance(INCOMING_REFRESH_MS);
    assert.equal(world.vm.thresholds.get('vda'), 384 * MiB);
    assert.deepEqual(world.events, ['arrived 0']);
    world.monitor.stop();
  });

  it('a write that meets a stale size at switch-over: refreshes and resumes without asking the SPM', async () => {
    const world = setup({ runState: 'running', seenBytes: 512 * MiB, storageBytes: 768 * MiB });
    await world.monitor.start();
    world.vm.runStateValue = 'io-error';
    world.vm.noSpace.add('vda');
    world.vm.highWater.set('vda', 512 * MiB);
    world.monitor.handle({ type: 'io-error', drive: 'vda', noSpace: true, action: 'stop' });
    world.monitor.handle({ type: 'stopped' });
    await world.clock.advance(0);
    assert.deepEqual(world.storage.requests, [], 'the SPM was not asked');
    assert.equal(world.vm.resumes, 1);
    assert.deepEqual(world.events, ['resumed']);
    const status = world.monitor.status();
    assert.equal(status.pauses, 1);
    assert.equal(status.drives[0]!.volumeBytes, 768 * MiB);
    assert.equal(status.drives[0]!.extensions, 0);
    world.monitor.stop();
  });

  it('an agent that came up after the pause, whose own attach refresh grew the view: resumes first, and asks the SPM only if the VM pauses again', async () => {
    const world = setup({ runState: 'io-error', seenBytes: 768 * MiB, storageBytes: 768 * MiB, grewUnseen: true });
    world.vm.noSpace.add('vda');
    world.vm.highWater.set('vda', 500 * MiB);
    await world.monitor.start();
    await world.clock.advance(0);
    assert.deepEqual(world.storage.requests, []);
    assert.equal(world.vm.resumes, 1);
    world.vm.runStateValue = 'io-error';
    world.vm.noSpace.add('vda');
    world.monitor.handle({ type: 'io-error', drive: 'vda', noSpace: true, action: 'stop' });
    await world.clock.advance(0);
    assert.deepEqual(world.storage.requests, [{ volume: 'vm1-vda', targetBytes: 1024 * MiB }], 'the second pause is a real lack of space');
    assert.equal(world.vm.resumes, 2);
    world.monitor.stop();
  });

  it('a write that meets the old size just after arrival (the arrival refresh came first): resumes without asking the SPM', async () => {
    const world = setup({ runState: 'inmigrate' });
    await world.monitor.start();
    world.storage.sizes.set('vm1-vda', 768 * MiB);
    world.vm.runStateValue = 'running';
    world.monitor.handle({ type: 'resumed' });
    await world.clock.advance(0);
    world.vm.runStateValue = 'io-error';
    world.vm.noSpace.add('vda');
    world.vm.highWater.set('vda', 510 * MiB);
    world.monitor.handle({ type: 'io-error', drive: 'vda', noSpace: true, action: 'stop' });
    await world.clock.advance(0);
    assert.deepEqual(world.storage.requests, []);
    assert.equal(world.vm.resumes, 1);
    world.monitor.stop();
  });

  it('asks the SPM as usual when a refresh shows no more space than this host had', async () => {
    const world = setup({ runState: 'running' });
    await world.monitor.start();
    world.vm.runStateValue = 'io-error';
    world.vm.noSpace.add('vda');
    world.vm.highWater.set('vda', 512 * MiB);
    world.monitor.handle({ type: 'io-error', drive: 'vda', noSpace: true, action: 'stop' });
    await world.clock.advance(0);
    assert.deepEqual(world.storage.requests, [{ volume: 'vm1-vda', targetBytes: 768 * MiB }]);
    assert.equal(world.vm.resumes, 1);
    world.monitor.stop();
  });

  it('on the source, stops watching once QEMU reports postmigrate, and resumes nothing', async () => {
    const world = setup({ runState: 'running' });
    await world.monitor.start();
    world.vm.runStateValue = 'postmigrate';
    world.monitor.handle({ type: 'stopped' });
    await world.clock.advance(POLL_MS);
    assert.deepEqual(world.events, ['left']);
    assert.equal(world.monitor.status().migration, 'left');
    assert.equal(world.clock.pendingTimers, 0, 'no more polls');
    world.vm.highWater.set('vda', 500 * MiB);
    world.monitor.handle({ type: 'threshold', drive: 'vda', highWaterAtLeast: 500 * MiB });
    await world.clock.advance(POLL_MS);
    assert.deepEqual(world.storage.requests, [], 'a VM that left is not extended from here');
    assert.equal(world.vm.resumes, 0);
  });

  it('a failed or cancelled migration leaves the VM watched on the source as before', async () => {
    const world = setup({ runState: 'running' });
    await world.monitor.start();
    world.vm.runStateValue = 'finish-migrate';
    world.monitor.handle({ type: 'stopped' });
    await world.clock.advance(POLL_MS);
    world.vm.runStateValue = 'running';
    world.monitor.handle({ type: 'resumed' });
    await world.clock.advance(POLL_MS);
    assert.deepEqual(world.events, []);
    world.vm.highWater.set('vda', 400 * MiB);
    world.monitor.handle({ type: 'threshold', drive: 'vda', highWaterAtLeast: 400 * MiB });
    await world.clock.advance(0);
    assert.deepEqual(world.events, ['extended 768']);
    world.monitor.stop();
  });

  it('in post-copy (running here before the migration ended) asks libvirt nothing it would hold, gives the drive its free target at once, extends a pause at once, and resumes and arms once the migration ended', async () => {
    const world = setup({ runState: 'inmigrate' });
    await world.monitor.start();
    world.vm.heldByMigration = true;
    world.vm.runStateValue = 'postcopy';
    world.monitor.handle({ type: 'resumed' });
    await world.clock.advance(0);
    // 512 MiB counted as written to its end: a chunk (256 MiB, more than the free target) on top.
    assert.deepEqual(world.events, ['extended 768']);
    await world.clock.advance(INCOMING_REFRESH_MS * 3);
    assert.deepEqual(world.vm.askedWhileHeld, [], 'nothing libvirt holds was asked while the VM ran in post-copy');
    assert.equal(world.vm.thresholds.size, 0);
    assert.equal(world.monitor.status().migration, 'incoming', 'still migrating in until the migration ends');

    // The guest outruns that: its write finds no space, and the VM pauses before the migration ended.
    world.vm.runStateValue = 'io-error';
    world.monitor.handle({ type: 'io-error', drive: 'vda', noSpace: true, action: 'stop' });
    await world.clock.advance(0);
    assert.deepEqual(world.events, ['extended 768', 'extended 1024'], 'extended at once, not when the migration ends');
    await world.clock.advance(INCOMING_REFRESH_MS * 3);
    assert.equal(world.vm.resumes, 0, 'libvirt refuses the resume until the migration ends');
    assert.ok(world.vm.askedWhileHeld.every((question) => question === 'resume'), `only the resume was tried: ${world.vm.askedWhileHeld.join(', ')}`);
    assert.equal(world.monitor.status().pausedForNoSpace, true);

    // The migration ends: the resume goes through, and the VM is watched as if it had started here.
    world.vm.heldByMigration = false;
    await world.clock.advance(INCOMING_REFRESH_MS);
    await world.clock.advance(INCOMING_REFRESH_MS);
    assert.equal(world.vm.resumes, 1);
    assert.deepEqual(world.events.slice(2, 3), ['resumed']);
    assert.ok(world.events.some((event) => event.startsWith('arrived')), world.events.join(', '));
    assert.equal(world.vm.thresholds.get('vda'), 1024 * MiB - POLICY.freeTargetBytes);
    assert.equal(world.monitor.status().migration, null);
    assert.equal(world.monitor.status().pauses, 1);
    world.monitor.stop();
  });

  it('a post-copy that failed ("paused (post-copy failed)") is never resumed here', async () => {
    const world = setup({ runState: 'inmigrate' });
    await world.monitor.start();
    world.vm.runStateValue = 'postcopy';
    world.monitor.handle({ type: 'resumed' });
    await world.clock.advance(0);
    world.vm.runStateValue = 'paused';
    await world.clock.advance(INCOMING_REFRESH_MS * 5);
    assert.equal(world.vm.resumes, 0);
    assert.equal(world.monitor.status().pausedForNoSpace, false);
    world.monitor.stop();
  });

  it('never resumes a VM whose pause became a migration while its extension ran', async () => {
    const world = setup({ runState: 'running' });
    world.storage.delayMs = 500;
    await world.monitor.start();
    world.vm.runStateValue = 'io-error';
    world.vm.noSpace.add('vda');
    world.vm.highWater.set('vda', 512 * MiB);
    world.monitor.handle({ type: 'io-error', drive: 'vda', noSpace: true, action: 'stop' });
    await world.clock.advance(100);
    world.vm.runStateValue = 'finish-migrate';
    await world.clock.advance(1_000);
    assert.equal(world.vm.resumes, 0);
    world.monitor.stop();
  });

  it('on the destination, announces each view it refreshed to while the VM migrates in, and withdraws it once the VM runs here', async () => {
    const world = setup({ runState: 'inmigrate' });
    await world.monitor.start();
    world.storage.sizes.set('vm1-vda', 768 * MiB);
    await world.clock.advance(INCOMING_REFRESH_MS);
    world.vm.runStateValue = 'running';
    world.monitor.handle({ type: 'resumed' });
    await world.clock.advance(0);
    assert.deepEqual(world.peers.announced, [['vm1-vda', 512 * MiB], ['vm1-vda', 768 * MiB], ['vm1-vda', undefined]]);
    world.monitor.stop();
  });

  it('while QEMU is still starting here (a start, or a migration libvirt does not call one yet): announces the views at once, withdraws them once a plain start runs', async () => {
    const world = setup({ runState: 'starting' });
    await world.monitor.start();
    assert.deepEqual(world.peers.announced, [['vm1-vda', 512 * MiB]]);
    world.storage.sizes.set('vm1-vda', 768 * MiB);
    await world.clock.advance(INCOMING_REFRESH_MS);
    assert.deepEqual(world.peers.announced.at(-1), ['vm1-vda', 768 * MiB], 'refreshed and announced again while starting');
    world.vm.runStateValue = 'running';
    await world.clock.advance(INCOMING_REFRESH_MS);
    assert.deepEqual(world.peers.announced.at(-1), ['vm1-vda', undefined], 'withdrawn: nothing migrates in');
    assert.equal(world.monitor.status().migration, null);
    assert.deepEqual(world.events.filter((event) => event.startsWith('arrived')), []);
    world.monitor.stop();
  });

  it('withdraws its incoming views when the migration in ends without the VM running here', async () => {
    const world = setup({ runState: 'inmigrate' });
    await world.monitor.start();
    world.monitor.stop();
    await world.clock.advance(0);
    assert.deepEqual(world.peers.announced.at(-1), ['vm1-vda', undefined]);
  });

  it('on the source during a migration, uses new space only after the destination announced it sees it', async () => {
    const world = setup({ runState: 'running' });
    await world.monitor.start();
    world.vm.migrating = true;
    world.vm.highWater.set('vda', 400 * MiB);
    const refreshesBefore = world.storage.refreshes;
    world.monitor.handle({ type: 'threshold', drive: 'vda', highWaterAtLeast: 400 * MiB });
    await world.clock.advance(1_000);
    assert.deepEqual(world.storage.requests, [{ volume: 'vm1-vda', targetBytes: 768 * MiB }], 'the SPM extends at once');
    assert.equal(world.storage.refreshes, refreshesBefore, 'but this host does not see the space yet');
    assert.equal(world.monitor.status().drives[0]!.volumeBytes, 512 * MiB);
    world.peers.destinationViews.set('vm1-vda', 768 * MiB);
    await world.clock.advance(100);
    assert.deepEqual(world.events, ['extended 768']);
    assert.equal(world.vm.migrationCancels, 0);
    world.monitor.stop();
  });

  it('on the source, when no destination sees the new space in time: cancels the migration, then uses the space here', async () => {
    const world = setup({ runState: 'running' });
    await world.monitor.start();
    world.vm.migrating = true;
    world.vm.highWater.set('vda', 400 * MiB);
    world.monitor.handle({ type: 'threshold', drive: 'vda', highWaterAtLeast: 400 * MiB });
    await world.clock.advance(DESTINATION_WAIT_MS - 100);
    assert.deepEqual(world.events, []);
    assert.equal(world.vm.migrationCancels, 0);
    await world.clock.advance(200);
    assert.equal(world.vm.migrationCancels, 1);
    assert.deepEqual(world.events, ['migration cancelled', 'extended 768']);
    world.monitor.stop();
  });

  it('on the source, a migration that ends while the destination is awaited (cancelled, failed): uses the new space at once, cancels nothing', async () => {
    const world = setup({ runState: 'running' });
    await world.monitor.start();
    world.vm.migrating = true;
    world.vm.highWater.set('vda', 400 * MiB);
    world.monitor.handle({ type: 'threshold', drive: 'vda', highWaterAtLeast: 400 * MiB });
    await world.clock.advance(1_000);
    assert.deepEqual(world.events, [], 'still waiting for a destination');
    world.vm.migrating = false; // the administrator ran `virsh domjobabort`
    await world.clock.advance(300);
    assert.deepEqual(world.events, ['extended 768'], 'within one look at the job, far before the destination wait would give up');
    assert.equal(world.monitor.status().drives[0]!.volumeBytes, 768 * MiB);
    assert.equal(world.vm.migrationCancels, 0);
    world.monitor.stop();
  });

  it('on the source, a pause for lack of space during a migration is not undone by a refresh of its own', async () => {
    const world = setup({ runState: 'running', seenBytes: 512 * MiB, storageBytes: 768 * MiB });
    await world.monitor.start();
    world.vm.migrating = true;
    world.vm.runStateValue = 'io-error';
    world.vm.noSpace.add('vda');
    world.vm.highWater.set('vda', 512 * MiB);
    world.monitor.handle({ type: 'io-error', drive: 'vda', noSpace: true, action: 'stop' });
    await world.clock.advance(1_000);
    assert.equal(world.vm.resumes, 0, 'the destination has not announced the space');
    world.peers.destinationViews.set('vm1-vda', 1024 * MiB);
    await world.clock.advance(100);
    assert.equal(world.vm.resumes, 1);
    assert.equal(world.monitor.status().drives[0]!.volumeBytes, 768 * MiB);
    world.monitor.stop();
  });
});
