import assert from 'node:assert/strict';
import { readFile, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import type { LabVm } from '../../src/lab/lab-vm.js';
import { QmpClient } from '../../src/qmp/client.js';
import { volumeCap } from '../../src/spm/validate.js';
import { MiB } from '../../src/util/sizes.js';
import { readStatus } from '../../src/agent/status-file.js';
import { ClusterWorld } from '../integration/helpers/cluster-world.js';
import { LibvirtGuest } from '../integration/helpers/libvirt-guest.js';
import { LibvirtHost } from '../integration/helpers/libvirt-host.js';
import { TidelineProcess } from '../integration/helpers/tideline-process.js';
import { until } from '../integration/helpers/watch.js';
import { ensureSanlockDaemon, sanlockHoldersUnder } from '../integration/helpers/sanlock-daemon.js';
import { initSanlock, leaveLockspace, SANLOCK_TERM_ENDED_MESSAGE, type SanlockPlacement } from '../../src/lease/sanlock.js';
import { LEASE_LOST_MESSAGE } from '../../src/spm/spm-daemon.js';
import { execaRunner } from '../../src/util/runner.js';
import { isAlive } from '../../src/util/process-alive.js';

/**
 * Faults at random moments while a guest writes and then verifies its disk:
 * a cluster of two SPM candidates (hosts 1 and 3) and one VM host (host 2),
 * the fault injected again and again. Each kind ends with one line:
 * "N cycles, 0 corruptions, 0 stuck VMs, 0 over-extensions, max pause X s".
 *
 * `npm run chaos` runs TIDELINE_CHAOS_CYCLES (20) cycles per kind; the suite
 * runs one, so the harness cannot rot.
 */
const CYCLES = Number(process.env.TIDELINE_CHAOS_CYCLES ?? 1);
/** The guest's writes are capped so that it keeps writing through every cycle, on any machine. */
const WRITE_CAP_BYTES_PER_SECOND = 12 * MiB;
/** About what one cycle of the libvirtd kind takes (a restart and, every other time, a wait for an extension): at 7 s, 20 cycles outlasted the guest's writes. */
const SECONDS_PER_CYCLE = 10;
const WRITE_MIB = Math.max(192, Math.ceil((CYCLES * SECONDS_PER_CYCLE * WRITE_CAP_BYTES_PER_SECOND) / MiB / 64) * 64);
const LEASE_EXPIRY_SECONDS = 2;
/** As in test/integration/sanlock-spm.test.ts: short, but long enough for a loaded machine to join. */
const SANLOCK_IO_TIMEOUT_SECONDS = 5;
const SANLOCK_STALL_TIMEOUT_SECONDS = 3;
const CHUNK = 64 * MiB;
const FREE_TARGET = 64 * MiB;

interface Outcome {
  cycles: number;
  corruptions: number;
  stuck: number;
  overExtensions: number;
  maxPauseSeconds: number;
}

const random = (low: number, high: number) => low + Math.random() * (high - low);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe(`chaos: faults at random moments (${CYCLES} cycle${CYCLES === 1 ? '' : 's'} per kind)`, function () {
  this.timeout(Math.max(10 * 60_000, CYCLES * 60_000));
  let cluster: ClusterWorld;
  const summaries: string[] = [];

  beforeEach(async () => {
    cluster = await ClusterWorld.create(4);
  });
  afterEach(async () => {
    for (const process of cluster.processes) if (process.pid !== undefined) process.child.kill('SIGCONT');
    await cluster.dispose();
  });
  after(() => {
    if (summaries.length > 0) process.stdout.write(`\n${summaries.map((line) => `      ${line}`).join('\n')}\n`);
  });

  /** The guest under fault: its QMP status sampled every 100 ms on the admin socket, pauses timed from outside tideline. */
  async function underFault(kind: string, faults: Faults, inject: (world: Faults) => Promise<void>): Promise<Outcome> {
    // The second candidate starts once the first acts: two supervisors joining one sanlock daemon's lockspace at once collide.
    await faults.startSpm(1);
    await faults.currentSpm();
    await faults.startSpm(3);
    const vm = await cluster.lab.startVm({ name: 'chaos', writeMib: WRITE_MIB });
    await vm.throttleWrites(WRITE_CAP_BYTES_PER_SECOND);
    faults.vm = vm;
    await faults.startAgent();
    const pauses = await watchPauses(vm);
    await until(() => vm.phase === 'writing' && vm.progress.writtenMib >= 64, 180_000, () => `the guest to start writing (phase ${vm.phase}, ${vm.progress.writtenMib} MiB)`);
    let cycles = 0;
    try {
      while (cycles < CYCLES && vm.phase !== 'done' && vm.phase !== 'reading') {
        await sleep(random(1_000, 3_000));
        if (vm.phase !== 'writing') break;
        await inject(faults);
        cycles += 1;
      }
      let timer: NodeJS.Timeout | undefined;
      const finished = await Promise.race([vm.finished().then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), 6 * 60_000)))]).finally(() => clearTimeout(timer));
      const volume = await cluster.lab.plugin.describe(vm.volume);
      const cap = volumeCap(volume, cluster.lab.plugin.extentBytes) ?? Number.MAX_SAFE_INTEGER;
      // Everything was written once, so the image ends near the write size; more than a chunk and the free target above it is an extension too many.
      const overExtended = volume.sizeBytes > Math.min(cap, WRITE_MIB * MiB + 64 * MiB + CHUNK + FREE_TARGET);
      const outcome: Outcome = {
        cycles,
        corruptions: vm.progress.result ? vm.progress.result.bad : 0,
        stuck: finished && vm.progress.result ? 0 : 1,
        overExtensions: overExtended ? 1 : 0,
        maxPauseSeconds: pauses.maxSeconds(),
      };
      summaries.push(`${kind}: ${outcome.cycles} cycles, ${outcome.corruptions} corruptions, ${outcome.stuck} stuck VMs, ${outcome.overExtensions} over-extensions, max pause ${outcome.maxPauseSeconds.toFixed(1)} s`);
      return outcome;
    } finally {
      pauses.stop();
    }
  }

  /** True once the SPM holds a request (it delays each by 400 ms); false if `done` comes first. Neither within a minute fails. */
  async function extensionInFlightOrDone(spm: TidelineProcess, done: () => Promise<boolean>): Promise<boolean> {
    const inFlight = spm.waitFor('request delayed (testing)', 60_000, spm.logged('request delayed (testing)').length + 1).then(() => true);
    const finished = until(done, 60_000, 'the guest to finish writing').then(() => false);
    // The loser of the race is left to time out on its own; its rejection is not this cycle's failure.
    inFlight.catch(() => undefined);
    finished.catch(() => undefined);
    return Promise.any([inFlight, finished]).catch(() => assert.fail('within a minute, no extension came and the guest did not finish writing'));
  }

  function assertClean(outcome: Outcome): void {
    assert.ok(outcome.cycles >= Math.min(CYCLES, 1), `no fault was injected (${outcome.cycles} cycles)`);
    assert.equal(outcome.corruptions, 0, 'units read back wrong');
    assert.equal(outcome.stuck, 0, 'the VM did not finish its job');
    assert.equal(outcome.overExtensions, 0, 'the volume grew beyond what the writes needed');
  }

  it('kill -9 of the agent, restarted 0-3 s later', async () => {
    assertClean(
      await underFault('agent kill -9', new Faults(cluster), async (faults) => {
        faults.agent!.child.kill('SIGKILL');
        await faults.agent!.child;
        await sleep(random(0, 3_000));
        await faults.startAgent();
      }),
    );
  });

  it('kill -9 of the SPM while an extension is in flight; the other candidate takes over, the killed one comes back as a candidate', async () => {
    assertClean(
      await underFault('SPM kill -9 mid-request', new Faults(cluster, { extraSpmArgs: ['--request-delay', '400'] }), async (faults) => {
        const spm = await faults.currentSpm();
        await spm.waitFor('request delayed (testing)', 60_000, spm.logged('request delayed (testing)').length + 1);
        await faults.replaceSpm(spm);
      }),
    );
  });

  it('kill -9 of QEMU while an extension of its volume is in flight; the next VMs on the same agent grow as usual', async () => {
    const faults = new Faults(cluster, { extraSpmArgs: ['--request-delay', '400'] });
    await faults.startSpm(1);
    const spm = await faults.currentSpm();
    // The agent finds every VM by its QMP socket in the lab directory, as `--qmp-dir` does for plain QEMU hosts.
    const agent = faults.startDirectoryAgent();
    let corruptions = 0;
    let overExtensions = 0;
    let cycles = 0;
    for (let cycle = 0; cycle < CYCLES; cycle += 1) {
      const vm = await cluster.lab.startVm({ name: `qkill${cycle}`, writeMib: 1024 });
      await vm.throttleWrites(WRITE_CAP_BYTES_PER_SECOND);
      await until(() => vm.phase === 'writing' && vm.progress.writtenMib >= 64, 180_000, () => `guest ${cycle} to write 64 MiB (phase ${vm.phase}, ${vm.progress.writtenMib} MiB)`);
      // An extension of this VM's volume reaches the SPM; QEMU dies at a random moment while it is served.
      await spm.waitFor('request delayed (testing)', 120_000, spm.logged('request delayed (testing)').length + 1);
      await sleep(random(0, 400));
      await vm.qemu.kill();
      // The guest reports every 64 MiB: it may have written up to that much more, plus the unit under way.
      const writtenAtMost = (vm.progress.writtenMib + 64 + 16) * MiB;
      cycles += 1;
      // The extension in flight lands on a volume nobody uses: harmless (sizes are absolute), and the image stays consistent.
      await sleep(1_000);
      const check = await imageCheck(vm.devicePath);
      corruptions += check.corruptions + check.checkErrors;
      // Measured against what the guest wrote, not the image's end: QEMU died with table updates not yet written.
      const sizeBytes = (await cluster.lab.plugin.describe(vm.volume)).sizeBytes;
      if (sizeBytes > writtenAtMost + CHUNK + FREE_TARGET + 64 * MiB) overExtensions += 1;
      await vm.destroy();
    }
    // After the crashes, a VM on the same agent writes and verifies its whole disk.
    const survivor = await cluster.lab.startVm({ name: 'qkill-after', writeMib: 256 });
    const pauses = await watchPauses(survivor);
    let timer: NodeJS.Timeout | undefined;
    const finished = await Promise.race([survivor.finished().then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), 6 * 60_000)))]).finally(() => clearTimeout(timer));
    pauses.stop();
    const outcome: Outcome = {
      cycles,
      corruptions: corruptions + (survivor.progress.result?.bad ?? 0),
      stuck: finished && survivor.progress.result ? 0 : 1,
      overExtensions,
      maxPauseSeconds: pauses.maxSeconds(),
    };
    summaries.push(`QEMU kill -9 mid-extension: ${outcome.cycles} cycles, ${outcome.corruptions} corruptions, ${outcome.stuck} stuck VMs, ${outcome.overExtensions} over-extensions, max pause ${outcome.maxPauseSeconds.toFixed(1)} s`);
    assertClean(outcome);
    assert.equal(agent.child.exitCode, null, 'the agent is still running');
  });

  it('kill -9 of libvirtd, restarted 0-3 s later (every other time while an extension is in flight); the domain keeps growing under the libvirt agent', async () => {
    const faults = new Faults(cluster, { extraSpmArgs: ['--request-delay', '400'] });
    await faults.startSpm(1);
    const spm = await faults.currentSpm();
    const host = await LibvirtHost.start(cluster.lab.workspace, { name: '2', uuid: '7d1e0c5a-0000-4000-8000-00000000c4a2', tidelineConfig: `loop-domain = ${cluster.lab.workspace.domainDir}\nloop-view = 2\n` });
    const statusFile = path.join(cluster.dir, 'status-libvirt.json');
    try {
      const agent = new TidelineProcess('agent-libvirt', [
        'agent', '--libvirt', '--mailbox', cluster.mailboxPath, '--host-id', '2', '--chunk', String(CHUNK), '--free-target', String(FREE_TARGET),
        '--hook-spool', host.hookSpool, '--poll', '0.5', '--status-file', statusFile, '--control-socket', path.join(cluster.dir, 'agent-libvirt.sock'),
      ], { prefix: host.prefix });
      cluster.processes.push(agent);
      await agent.waitFor('following libvirt hook events', 60_000);
      const guest = await LibvirtGuest.create(cluster, host, { domain: `tlchaos${process.pid}`, volume: 'chaos-libvirt-vda', writeMib: WRITE_MIB, writeBytesPerSecond: WRITE_CAP_BYTES_PER_SECOND });
      await guest.waitWritten(64, 180_000);
      let cycles = 0;
      while (cycles < CYCLES && (await guest.writtenMib()) < WRITE_MIB - 32) {
        await sleep(random(1_000, 3_000));
        // Every other kill lands while an extension is in flight, unless the guest has written all it will (then no extension comes).
        if (cycles % 2 === 1 && !(await extensionInFlightOrDone(spm, async () => (await guest.writtenMib()) >= WRITE_MIB - 32))) break;
        await host.killDaemon();
        await sleep(random(0, 3_000));
        await host.startDaemon();
        cycles += 1;
      }
      const result = await until(async () => (await guest.lines()).some((line) => line.kind === 'result'), 6 * 60_000, 'the guest to report its result').then(
        async () => (await guest.lines()).find((line) => line.kind === 'result'),
        () => undefined,
      );
      const sizeBytes = (await cluster.lab.plugin.describe('chaos-libvirt-vda')).sizeBytes;
      // Pauses as tideline timed them (libvirtd, the only other way to ask, is what this kind kills).
      const pausedMs = agent.logged('VM resumed after extension').map((event) => Number(event.pausedMs));
      const stillPaused = (await readStatus(statusFile).catch(() => undefined))?.vms.some((vm) => vm.pausedForNoSpace) ?? false;
      const outcome: Outcome = {
        cycles,
        corruptions: result?.kind === 'result' ? result.bad : 0,
        stuck: result && !stillPaused ? 0 : 1,
        overExtensions: sizeBytes > WRITE_MIB * MiB + 64 * MiB + CHUNK + FREE_TARGET ? 1 : 0,
        maxPauseSeconds: Math.max(0, ...pausedMs) / 1000,
      };
      summaries.push(`libvirtd kill -9: ${outcome.cycles} cycles, ${outcome.corruptions} corruptions, ${outcome.stuck} stuck VMs, ${outcome.overExtensions} over-extensions, max pause ${outcome.maxPauseSeconds.toFixed(1)} s (as the agent timed it)`);
      assertClean(outcome);
      assert.ok(agent.logged('libvirt event stream ended; reconnecting').length >= 1, 'the agent noticed libvirtd go');
      assert.equal(agent.child.exitCode, null, 'the agent is still running');
    } finally {
      await host.stop().catch(() => undefined);
    }
  });

  it('the mailbox and lease volumes failing for 1-4 s (every read and write an error), then back: SPMs and the agent retry, recover and never crash', async () => {
    const storage = await FailingStorage.attach(cluster.mailboxPath, cluster.leasePath);
    try {
      assertClean(
        await underFault('mailbox and lease storage failing', new Faults(cluster, { storage: storage.devices }), async () => {
          await storage.fail(cluster.processes);
          await sleep(random(1_000, 4_000));
          await storage.restore();
        }),
      );
      for (const tideline of cluster.processes) assert.equal(tideline.child.exitCode, null, `${tideline.name} is still running`);
      const noticed = cluster.processes.flatMap((tideline) => tideline.events).filter((event) => /short read|short write|ENOSPC|EIO|mailbox-io|input\/output/i.test(JSON.stringify(event))).length;
      assert.ok(noticed > 0, 'the processes met the failing storage');
    } finally {
      await storage.detach();
    }
  });

  it('the storage domain full for 1-3 s (another volume takes every free byte), then space back: the VM waits paused if it must, and resumes without a restart', async () => {
    const plugin = cluster.lab.plugin;
    const faults = new Faults(cluster);
    const outcome = await underFault('storage domain full', faults, async () => {
      const free = Math.floor((await plugin.freeBytes()) / MiB) * MiB;
      if (free > 0) await plugin.create('chaos-filler', free);
      await sleep(random(1_000, 3_000));
      // As an administrator would: the other volume goes (or the VG grows), and nothing of tideline is restarted.
      await plugin.remove('chaos-filler').catch(() => undefined);
    });
    const refusedFull = faults.agent!.logged('extension failed').filter((event) => JSON.stringify(event).includes('domain-full')).length;
    summaries.push(`  (storage domain full: the agent met ${refusedFull} domain-full refusal${refusedFull === 1 ? '' : 's'} in all)`);
    assertClean(outcome);
  });

  it('SIGSTOP of the SPM past its lease expiry, then SIGCONT', async () => {
    assertClean(
      await underFault('SPM SIGSTOP/SIGCONT', new Faults(cluster), async (faults) => {
        const spm = await faults.currentSpm();
        spm.child.kill('SIGSTOP');
        await sleep(random(LEASE_EXPIRY_SECONDS * 1_500, LEASE_EXPIRY_SECONDS * 3_000));
        spm.child.kill('SIGCONT');
      }),
    );
  });

  it('SIGSTOP of the SPM holding a sanlock lease for 1-6 s (its supervisor kills it after 3 s still), then SIGCONT: never a second holder while the stopped one lives', async () => {
    const daemon = await ensureSanlockDaemon();
    const placement: SanlockPlacement = { lockspace: `tlchaos${process.pid}`, hostId: 1, idsPath: path.join(cluster.dir, 'sanlock-ids'), leasesPath: path.join(cluster.dir, 'sanlock-leases') };
    try {
      for (const file of [placement.idsPath, placement.leasesPath]) {
        await writeFile(file, '');
        await truncate(file, 2 * MiB);
      }
      await initSanlock(execaRunner, placement);
      // Sampled every 100 ms while the holder is stopped: a live stopped holder beside another holder could still write after it.
      let overlaps = 0;
      let killedByWatchdog = 0;
      const outcome = await underFault('sanlock SPM SIGSTOP/SIGCONT', new Faults(cluster, { sanlock: placement }), async () => {
        const holder = await until(async () => (await sanlockHoldersUnder(cluster.dir)).length === 1, 120_000, 'one process to hold the sanlock SPM lease').then(async () => (await sanlockHoldersUnder(cluster.dir))[0]!);
        process.kill(holder, 'SIGSTOP');
        const stoppedUntil = Date.now() + random(1_000, 6_000);
        while (Date.now() < stoppedUntil) {
          const holders = await sanlockHoldersUnder(cluster.dir);
          if (holders.length > 1 || (holders.some((pid) => pid !== holder) && isAlive(holder))) overlaps += 1;
          await sleep(100);
        }
        if (isAlive(holder)) process.kill(holder, 'SIGCONT');
        else killedByWatchdog += 1;
      });
      summaries.push(`  (sanlock: ${killedByWatchdog} of ${outcome.cycles} stopped holders killed by their supervisor, ${overlaps} samples with a second holder beside a live stopped one)`);
      assertClean(outcome);
      assert.equal(overlaps, 0, 'another process held the SPM lease while the stopped holder still lived');
    } finally {
      // Supervisors first, so that none starts a new holder; then the holders (stopped ones too), then the lockspace.
      for (const tideline of cluster.processes) if (tideline.name.startsWith('spm')) tideline.child.kill('SIGKILL');
      for (const pid of await sanlockHoldersUnder(cluster.dir).catch(() => [] as number[])) {
        process.kill(pid, 'SIGKILL');
        process.kill(pid, 'SIGCONT');
      }
      await leaveLockspace(execaRunner, placement).catch(() => undefined);
      await daemon.stop();
    }
  });
});

/** The processes of the cluster under fault, and how to replace them. */
class Faults {
  vm: LabVm | undefined;
  agent: TidelineProcess | undefined;
  private readonly spms = new Map<number, TidelineProcess>();
  private agentStarts = 0;
  private readonly extraSpmArgs: string[];
  /** The mailbox and lease as the processes open them: the cluster's files, or block devices over them. */
  private readonly storage: { mailbox: string; lease: string };
  /** SPM candidates under a sanlock lease instead of the built-in one (one daemon is one sanlock host: both are its host 1). */
  private readonly sanlock: SanlockPlacement | undefined;

  constructor(
    private readonly cluster: ClusterWorld,
    options: { extraSpmArgs?: string[]; storage?: { mailbox: string; lease: string }; sanlock?: SanlockPlacement } = {},
  ) {
    this.extraSpmArgs = options.extraSpmArgs ?? [];
    this.storage = options.storage ?? { mailbox: cluster.mailboxPath, lease: cluster.leasePath };
    this.sanlock = options.sanlock;
  }

  async startSpm(hostId: number): Promise<TidelineProcess> {
    const lease = this.sanlock
      ? ['--lease-backend', 'sanlock', '--lockspace', this.sanlock.lockspace, '--ids', this.sanlock.idsPath, '--lease', this.sanlock.leasesPath, '--host-id', String(this.sanlock.hostId),
        '--sanlock-io-timeout', String(SANLOCK_IO_TIMEOUT_SECONDS), '--stall-timeout', String(SANLOCK_STALL_TIMEOUT_SECONDS)]
      : ['--lease-backend', 'storage', '--lease', this.storage.lease, '--host-id', String(hostId), '--lease-expiry', String(LEASE_EXPIRY_SECONDS)];
    const spm = this.cluster.start(`spm${hostId}`, ['spm', ...lease, '--mailbox', this.storage.mailbox, '--domain', this.cluster.lab.workspace.domainDir, ...this.extraSpmArgs]);
    this.spms.set(hostId, spm);
    await spm.waitFor(this.sanlock ? 'joining the sanlock lockspace' : 'waiting for the SPM lease', 30_000);
    return spm;
  }

  /** The candidate acting as SPM now (waits for one; joining a sanlock lockspace takes tens of seconds). */
  async currentSpm(): Promise<TidelineProcess> {
    const deadline = Date.now() + (this.sanlock ? 240_000 : 60_000);
    while (Date.now() < deadline) {
      for (const spm of this.spms.values()) {
        const acting = spm.logged('acting as SPM').length;
        const lost = spm.logged(LEASE_LOST_MESSAGE).length + spm.logged(SANLOCK_TERM_ENDED_MESSAGE).length;
        if (acting > lost && spm.child.exitCode === null) return spm;
      }
      await sleep(50);
    }
    throw new Error('no SPM candidate acts as SPM');
  }

  /** kill -9, then the same host comes back as a candidate. */
  async replaceSpm(spm: TidelineProcess): Promise<void> {
    const hostId = [...this.spms].find(([, candidate]) => candidate === spm)![0];
    spm.child.kill('SIGKILL');
    await spm.child;
    await this.startSpm(hostId);
  }

  /** An agent that watches every VM whose QMP socket appears in the lab directory. */
  startDirectoryAgent(): TidelineProcess {
    this.agentStarts += 1;
    this.agent = this.cluster.start(`agent-${this.agentStarts}`, [
      'agent', '--qmp-dir', this.cluster.lab.dir, '--domain', this.cluster.lab.workspace.domainDir, '--mailbox', this.storage.mailbox, '--host-id', '2',
      '--chunk', String(CHUNK), '--free-target', String(FREE_TARGET), '--poll', '0.5', '--status-file', path.join(this.cluster.dir, 'status.json'),
      '--control-socket', path.join(this.cluster.dir, 'agent.sock'),
    ]);
    return this.agent;
  }

  async startAgent(): Promise<void> {
    const vm = this.vm!;
    this.agentStarts += 1;
    this.agent = this.cluster.start(`agent-${this.agentStarts}`, [
      'agent', '--qmp', `chaos=${vm.qmpSocket}`, '--domain', this.cluster.lab.workspace.domainDir, '--mailbox', this.storage.mailbox, '--host-id', '2',
      '--chunk', String(CHUNK), '--free-target', String(FREE_TARGET), '--poll', '0.5', '--status-file', path.join(this.cluster.dir, 'status.json'),
      '--control-socket', path.join(this.cluster.dir, 'agent.sock'),
    ]);
    await this.agent.waitFor('watching thin drive', 60_000);
  }
}

/**
 * The mailbox and lease files behind loop devices, as volumes on a LUN: the
 * processes open the devices. `fail` makes every read and write of them fail
 * (the backing files are emptied and the devices re-sized to nothing: a read
 * comes back short, a write finds no space), as a path to the storage lost
 * for a while; `restore` puts the contents back as they were when it failed.
 * The processes are held (SIGSTOP) only while the contents are saved, so no
 * write they were told had succeeded is lost: storage that loses acknowledged
 * writes is not the fault modelled here.
 */
class FailingStorage {
  private saved: Buffer[] = [];

  private constructor(
    private readonly files: string[],
    private readonly deviceOf: string[],
  ) {}

  static async attach(mailbox: string, lease: string): Promise<FailingStorage> {
    const devices: string[] = [];
    for (const file of [mailbox, lease]) devices.push((await execa('losetup', ['--find', '--show', file], { timeout: 10_000 })).stdout.trim());
    return new FailingStorage([mailbox, lease], devices);
  }

  get devices(): { mailbox: string; lease: string } {
    return { mailbox: this.deviceOf[0]!, lease: this.deviceOf[1]! };
  }

  async fail(holders: readonly TidelineProcess[]): Promise<void> {
    const running = holders.filter((tideline) => tideline.child.exitCode === null && tideline.pid !== undefined);
    for (const tideline of running) process.kill(tideline.pid!, 'SIGSTOP');
    try {
      this.saved = await Promise.all(this.files.map((file) => readFile(file)));
      for (const file of this.files) await truncate(file, 0);
      for (const device of this.deviceOf) await execa('losetup', ['--set-capacity', device], { timeout: 10_000 });
    } finally {
      for (const tideline of running) process.kill(tideline.pid!, 'SIGCONT');
    }
  }

  async restore(): Promise<void> {
    for (const [index, file] of this.files.entries()) await writeFile(file, this.saved[index]!);
    for (const device of this.deviceOf) await execa('losetup', ['--set-capacity', device], { timeout: 10_000 });
  }

  async detach(): Promise<void> {
    for (const device of this.deviceOf) await execa('losetup', ['--detach', device], { timeout: 10_000, reject: false });
  }
}

/** `qemu-img check` of an image no process has open: its errors. */
async function imageCheck(devicePath: string): Promise<{ corruptions: number; checkErrors: number }> {
  // Exit 3 means leaked clusters only: a killed QEMU may leave those, and they lose no data.
  const { stdout } = await execa('qemu-img', ['check', '--output=json', '-f', 'qcow2', devicePath], { timeout: 60_000, reject: false });
  const report = JSON.parse(stdout) as { corruptions?: number; 'check-errors'?: number };
  return { corruptions: report.corruptions ?? 0, checkErrors: report['check-errors'] ?? 0 };
}

/** Samples the VM's run state every 100 ms; the longest stretch not running while it writes is the worst pause a user met. */
async function watchPauses(vm: LabVm): Promise<{ maxSeconds(): number; stop(): void }> {
  const client = new QmpClient(vm.adminSocket);
  await client.start();
  let pausedSince: number | undefined;
  let longest = 0;
  let stopped = false;
  void (async () => {
    while (!stopped) {
      const status = await client.execute<{ status: string }>('query-status').then((reply) => reply.status, () => undefined);
      const now = Date.now();
      // Only pauses (a write that found no space, or a stop): the guest's own shutdown at the end is not one.
      if (status === 'io-error' || status === 'paused') pausedSince ??= now;
      if (status === 'running' && pausedSince !== undefined) {
        longest = Math.max(longest, now - pausedSince);
        pausedSince = undefined;
      }
      await sleep(100);
    }
  })();
  return {
    maxSeconds: () => Math.max(longest, pausedSince === undefined ? 0 : Date.now() - pausedSince) / 1000,
    stop: () => {
      stopped = true;
      client.close();
    },
  };
}
