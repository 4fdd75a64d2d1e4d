import assert from 'node:assert/strict';
import { access, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { LoopPlugin } from '../../plugins/loop/index.js';
import { readStatus } from '../../src/agent/status-file.js';
import { ARRIVED_PAUSED_MESSAGE, MIGRATION_CANCELLED_MESSAGE } from '../../src/monitor/migration.js';
import { parseGuestLine, type GuestLine } from '../../src/lab/guest-report.js';
import type { LabVm } from '../../src/lab/lab-vm.js';
import { QemuProcess } from '../../src/lab/qemu-process.js';
import { withQmpSession } from '../../src/qmp/client.js';
import { execaRunner } from '../../src/util/runner.js';
import { MiB } from '../../src/util/sizes.js';
import { ClusterWorld } from './helpers/cluster-world.js';
import { labBootImage, type LabWorld } from './helpers/lab-world.js';
import { TidelineProcess } from './helpers/tideline-process.js';
import { until } from './helpers/watch.js';

/**
 * Live migration of a plain QEMU VM whose thin disk grows, between two hosts
 * on this machine: host ids 1 and 2, one SPM, one loop storage domain in which
 * each host sees volumes through its own loop devices (`--loop-view`), so a
 * refresh on one host changes nothing on the other, as with device-mapper.
 * The source's guest writes throttled, so the volume grows before, during
 * (migration bandwidth is capped) and after the switch-over.
 */
const MAX_HOSTS = 4;
const WRITE_MIB = 768;
const THROTTLE_BYTES_PER_SECOND = 32 * MiB;
const MIGRATION_BANDWIDTH = 16 * MiB;
/** Slow enough that the guest needs new space before the migration could end. */
const SLOW_MIGRATION_BANDWIDTH = 2 * MiB;

describe('real QEMU: live migration between two hosts while the thin disk grows', function () {
  this.timeout(8 * 60_000);
  let cluster: ClusterWorld;
  let world: LabWorld;
  let destinations: QemuProcess[] = [];

  beforeEach(async () => {
    cluster = await ClusterWorld.create(MAX_HOSTS);
    world = cluster.lab;
  });
  afterEach(async function () {
    await cluster.keepLogsIfFailed(this.currentTest, 'qemu-migration');
    for (const qemu of destinations) await qemu.kill().catch(() => undefined);
    destinations = [];
    await cluster.dispose();
  });

  function start(name: string, args: string[]): TidelineProcess {
    return cluster.start(name, args);
  }

  function agent(hostId: number, watch: string[]): TidelineProcess {
    return start(`agent${hostId}`, [
      'agent', ...watch, '--domain', world.workspace.domainDir, '--loop-view', String(hostId), '--mailbox', cluster.mailboxPath, '--host-id', String(hostId),
      '--chunk', '64M', '--free-target', '64M', '--poll', '0.5', '--status-file', path.join(world.dir, `status-${hostId}.json`),
      '--control-socket', path.join(world.dir, `agent-${hostId}.sock`),
    ]);
  }

  async function hosts(): Promise<{ one: LoopPlugin; two: LoopPlugin }> {
    const open = (hostView: string) => LoopPlugin.open(world.workspace.domainDir, execaRunner, { hostView });
    return { one: await open('1'), two: await open('2') };
  }

  /** The source VM on host 1, writing throttled; the SPM on host 1. */
  async function startSource(one: LoopPlugin): Promise<LabVm> {
    const spm = cluster.spm(1, '2');
    await spm.waitFor('acting as SPM', 30_000);
    const vm = await world.startVm({ name: 'mig', writeMib: WRITE_MIB, plugin: one });
    await vm.throttleWrites(THROTTLE_BYTES_PER_SECOND);
    return vm;
  }

  /** The destination QEMU on host 2, waiting for the incoming state on a unix socket; its console parsed. */
  async function startDestination(vm: LabVm, two: LoopPlugin, qmpDir: string, name = 'migrate'): Promise<{ qemu: QemuProcess; lines: GuestLine[]; uri: string }> {
    // As the hook's prepare and `tideline volume activate` do: activated, then refreshed, so QEMU opens the volume at its current size
    // even when this host activated it earlier (the first destination of the agent-down test).
    const devicePath = await two.activate(vm.volume);
    await two.refresh(vm.volume);
    const uri = `unix:${path.join(world.dir, `${name}.sock`)}`;
    const adminSocket = path.join(world.dir, `${name}.admin.sock`);
    const qemu = new QemuProcess({
      boot: await labBootImage(),
      devicePath,
      driveId: 'vda',
      qmpSocket: path.join(qmpDir, 'mig.qmp'),
      adminSocket,
      consoleLog: path.join(world.dir, `mig-destination-${name}.console.log`),
      writeMib: WRITE_MIB,
      timeoutMs: 10 * 60_000,
      incoming: uri,
    });
    destinations.push(qemu);
    await world.workspace.recordPid(`mig-destination-${name}`, qemu.pid);
    const lines: GuestLine[] = [];
    qemu.on('line', (line) => {
      const parsed = parseGuestLine(line);
      if (parsed) lines.push(parsed);
    });
    const listening = uri.slice('unix:'.length);
    await until(() => access(listening).then(() => true, () => false), 30_000, `the destination QEMU to listen on ${listening}`);
    // QEMU does not carry I/O throttling across a migration (libvirt sets a domain's <iotune> again on the destination):
    // the guest goes on writing at the source's rate, so "no pause" does not depend on how fast this machine runs TCG.
    await withQmpSession(adminSocket, (client) => client.execute('block_set_io_throttle', {
      id: '/machine/peripheral/vda/virtio-backend', bps: 0, bps_rd: 0, bps_wr: THROTTLE_BYTES_PER_SECOND, iops: 0, iops_rd: 0, iops_wr: 0,
    }));
    return { qemu, lines, uri };
  }

  /** `migrate` from the source's admin monitor; resolves when QEMU reports the migration completed or cancelled. */
  async function migrate(vm: LabVm, uri: string, bandwidth = MIGRATION_BANDWIDTH): Promise<{ status: string; startedAt: number; completedAt: number }> {
    return vm.admin(async (client) => {
      await client.execute('migrate-set-parameters', { 'max-bandwidth': bandwidth });
      const startedAt = Date.now();
      await client.execute('migrate', { uri });
      for (;;) {
        const { status, 'error-desc': error } = await client.execute<{ status: string; 'error-desc'?: string }>('query-migrate');
        if (status === 'completed' || status === 'cancelled') return { status, startedAt, completedAt: Date.now() };
        assert.notEqual(status, 'failed', `migration failed: ${error ?? 'no reason given'}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    });
  }

  /** Source VM and its agent on host 1, past `writtenMib`; host 2's agent watching its QMP directory, and the destination QEMU it sees migrating in. */
  async function destinationWaiting(writtenMib: number) {
    const { one, two } = await hosts();
    const vm = await startSource(one);
    const source = agent(1, ['--qmp', `mig=${vm.qmpSocket}`]);
    const qmpDir = path.join(world.dir, 'host2-qmp');
    await mkdir(qmpDir);
    const destinationAgent = agent(2, ['--qmp-dir', qmpDir]);
    await until(() => vm.progress.writtenMib >= writtenMib, 120_000, () => `the source guest to write ${writtenMib} MiB (at ${vm.progress.writtenMib})`);
    const destination = await startDestination(vm, two, qmpDir);
    await destinationAgent.waitFor('VM is migrating in: keeping its volumes refreshed until it runs here', 30_000);
    return { vm, source, destinationAgent, destination };
  }

  /** The guest's final report on the destination: every unit there and read back intact, no error. */
  async function verifiedOnDestination(destination: { lines: GuestLine[] }, vm: LabVm): Promise<GuestLine & { kind: 'result' }> {
    await until(() => destination.lines.some((line) => line.kind === 'result'), 240_000, 'the guest on the destination to report its result');
    const result = destination.lines.find((line): line is GuestLine & { kind: 'result' } => line.kind === 'result')!;
    assert.equal(result.units, WRITE_MIB / 16);
    assert.equal(result.bad, 0, `every unit read back on the destination is intact; ${describeMismatches(destination.lines, vm)}`);
    assert.deepEqual(destination.lines.filter((line) => line.kind === 'error'), []);
    return result;
  }

  function served(spm: TidelineProcess): Array<{ hostId: number; targetBytes: number; time: number }> {
    return spm.logged('request served').map((event) => ({ hostId: Number(event.hostId), targetBytes: Number(event.targetBytes), time: Number(event.time) }));
  }

  it('keeps the volume growing before, during and after: zero pauses, thresholds armed at once on the destination, data intact', async () => {
    const { vm, source, destinationAgent, destination } = await destinationWaiting(192);

    const { status, startedAt, completedAt } = await migrate(vm, destination.uri);
    assert.equal(status, 'completed');
    await source.waitFor('VM migrated away: no longer watching it here (an extension in flight completes or is abandoned harmlessly: sizes are absolute)', 30_000);
    await destinationAgent.waitFor('VM arrived by live migration: volumes refreshed, thresholds armed', 30_000);
    await vm.qemu.kill(); // as libvirt ends the source QEMU once the destination runs

    const result = await verifiedOnDestination(destination, vm);

    const spm = cluster.processes.find((process) => process.name === 'spm1')!;
    const requests = served(spm);
    const before = requests.filter((request) => request.hostId === 1 && request.time < startedAt);
    const during = requests.filter((request) => request.time >= startedAt && request.time <= completedAt);
    const after = requests.filter((request) => request.hostId === 2 && request.time > completedAt);
    assert.ok(before.length > 0 && during.length > 0 && after.length > 0, `grew before (${before.length}), during (${during.length}) and after (${after.length}) the migration`);
    assert.ok(source.logged('migration destination sees the new space; using it here').length > 0, 'the source used new space only after the destination announced it');

    const arrived = destinationAgent.logged('VM arrived by live migration: volumes refreshed, thresholds armed')[0]!;
    const destinationStatus = (await readStatus(path.join(world.dir, 'status-2.json'))).vms.find((candidate) => candidate.vm === 'mig')!;
    const sourceStatus = (await readStatus(path.join(world.dir, 'status-1.json'))).vms.find((candidate) => candidate.vm === 'mig')!;
    assert.equal(sourceStatus.migration, 'left');
    assert.equal(sourceStatus.pauses, 0);
    assert.equal(destinationStatus.migration, null);
    assert.equal(destinationStatus.pauses, 0, `no pause on the destination; ${pausesSaid(source, destinationAgent)}`);
    assert.equal(destinationAgent.logged('write found no space only in this host\'s stale view of the volume; refreshed, resuming without asking the SPM').length, 0);
    process.stdout.write(
      `      migration: ${((completedAt - startedAt) / 1000).toFixed(1)} s; extensions before/during/after: ${before.length}/${during.length}/${after.length}; ` +
        `pauses: ${sourceStatus.pauses + destinationStatus.pauses}; switch-over to armed threshold: ${Number(arrived.armedMs)} ms; data verified: ${result.bad === 0}\n`,
    );
  });

  it("a destination whose agent is down: the source cancels the migration rather than hand over a disk the destination cannot see; with the agent up it succeeds", async () => {
    const { one, two } = await hosts();
    const vm = await startSource(one);
    const source = agent(1, ['--qmp', `mig=${vm.qmpSocket}`]);
    const qmpDir = path.join(world.dir, 'host2-qmp');
    await mkdir(qmpDir);
    await until(() => vm.progress.writtenMib >= 96, 120_000, () => `the source guest to write 96 MiB (at ${vm.progress.writtenMib})`);

    // Nobody on host 2 announces what it sees, so every extension during the migration finds no destination.
    const refused = await startDestination(vm, two, qmpDir, 'refused');
    const cancelled = await migrate(vm, refused.uri, SLOW_MIGRATION_BANDWIDTH);
    assert.equal(cancelled.status, 'cancelled', `the source cancelled the migration (${cancelled.status})`);
    await source.waitFor(MIGRATION_CANCELLED_MESSAGE, 10_000);
    await until(async () => (await vm.admin((client) => client.execute<{ status: string }>('query-status'))).status === 'running', 60_000, 'the VM to run on the source again');
    await refused.qemu.kill().catch(() => undefined);

    const destinationAgent = agent(2, ['--qmp-dir', qmpDir]);
    const destination = await startDestination(vm, two, qmpDir, 'accepted');
    await destinationAgent.waitFor('VM is migrating in: keeping its volumes refreshed until it runs here', 30_000);
    const completed = await migrate(vm, destination.uri, MIGRATION_BANDWIDTH);
    assert.equal(completed.status, 'completed');
    await destinationAgent.waitFor('VM arrived by live migration: volumes refreshed, thresholds armed', 30_000);
    await vm.qemu.kill();

    const result = await verifiedOnDestination(destination, vm);
    const sourceStatus = (await readStatus(path.join(world.dir, 'status-1.json'))).vms.find((candidate) => candidate.vm === 'mig')!;
    const destinationStatus = (await readStatus(path.join(world.dir, 'status-2.json'))).vms.find((candidate) => candidate.vm === 'mig')!;
    assert.equal(destinationStatus.pauses, 0, `no pause on the destination; ${pausesSaid(source, destinationAgent)}`);
    process.stdout.write(
      `      destination without an agent: migration cancelled by the source; pauses on the source meanwhile: ${sourceStatus.pauses}; ` +
        `second migration with the agent up completed; data verified: ${result.bad === 0}\n`,
    );
  });

  it('a VM that ran out of space on the source during the migration (its agent hung) arrives paused; the destination extends and resumes it; data intact', async () => {
    const { vm, source, destinationAgent, destination } = await destinationWaiting(96);

    const runState = () => vm.admin(async (client) => (await client.execute<{ status: string }>('query-status')).status);
    // The source's agent stops answering: the guest fills its free space there and pauses before the migration starts.
    process.kill(source.pid!, 'SIGSTOP');
    try {
      await until(async () => (await runState()) === 'io-error', 60_000, 'the guest to pause for lack of space on the source');
      const { status } = await migrate(vm, destination.uri);
      assert.equal(status, 'completed');
    } finally {
      process.kill(source.pid!, 'SIGCONT');
    }
    await vm.qemu.kill();
    await destinationAgent.waitFor(ARRIVED_PAUSED_MESSAGE, 30_000);
    await destinationAgent.waitFor('VM resumed after extension', 30_000);

    const result = await verifiedOnDestination(destination, vm);
    const destinationStatus = (await readStatus(path.join(world.dir, 'status-2.json'))).vms.find((candidate) => candidate.vm === 'mig')!;
    assert.equal(destinationStatus.pausedForNoSpace, false);
    process.stdout.write(`      arrived paused (io-error, no drive error carried over); the destination resumed it after ${Number(destinationAgent.logged('VM resumed after extension')[0]!.pausedMs).toFixed(0)} ms; data verified: ${result.bad === 0}\n`);
  });
});

/** What each agent said around a pause, on one clock: for the failure message of a pause that should not have happened. */
function pausesSaid(...agents: TidelineProcess[]): string {
  const pauseWords = /paus|resum|arrived|migrat|no space|stale view/i;
  return agents
    .flatMap((agent) => agent.events.filter((event) => pauseWords.test(String(event.msg))).map((event) => ({ agent: agent.name, event })))
    .sort((a, b) => Number(a.event.time) - Number(b.event.time))
    .map(({ agent, event }) => `${agent} ${JSON.stringify(event)}`)
    .join('\n');
}

/** What the guest said about the units it read back wrong, and how far it had got on each host: for the failure message. */
function describeMismatches(lines: readonly GuestLine[], source: LabVm): string {
  const mismatches = lines.filter((line) => line.kind === 'mismatch').map((line) => JSON.stringify(line));
  return `mismatches on the destination: ${mismatches.join(', ') || 'none reported'}; the source had written ${source.progress.writtenMib} MiB`;
}
