import assert from 'node:assert/strict';
import path from 'node:path';
import { readStatus } from '../../src/agent/status-file.js';
import { Mailbox } from '../../src/mailbox/mailbox.js';
import type { LabVm } from '../../src/lab/lab-vm.js';
import { ClusterWorld } from './helpers/cluster-world.js';
import type { LabWorld } from './helpers/lab-world.js';
import { assertOneServerAtATime } from './helpers/spm-timeline.js';
import { TidelineProcess } from './helpers/tideline-process.js';
import { until } from './helpers/watch.js';
import { freeLoopbackPort } from './helpers/free-port.js';

/**
 * Three hosts on one machine: three agents with distinct host ids, SPM
 * candidates on hosts 1 and 3, one mailbox and one storage domain. Every
 * extension travels agent -> mailbox -> SPM -> mailbox -> agent. Each
 * candidate has a doorbell on a loopback UDP port of its own (tideline.conf's
 * doorbell). In the first test the agents know no doorbell and ring the one
 * the SPM names in their reply slots; in the second they also ring both
 * candidates, as spm-doorbells sets it up.
 */
const MAX_HOSTS = 8;
const LEASE_EXPIRY_SECONDS = '2';

describe('real QEMU: three hosts, one SPM, extensions through the mailbox', function () {
  this.timeout(6 * 60_000);
  let cluster: ClusterWorld;
  let world: LabWorld;
  let mailboxPath: string;
  const doorbellPorts = new Map<number, number>();
  const metricsPorts = new Map<number, number>();

  beforeEach(async () => {
    cluster = await ClusterWorld.create(MAX_HOSTS);
    world = cluster.lab;
    mailboxPath = cluster.mailboxPath;
    for (const candidate of [1, 3]) {
      doorbellPorts.set(candidate, await freeLoopbackPort('udp'));
      metricsPorts.set(candidate, await freeLoopbackPort('tcp'));
    }
  });
  afterEach(async function () {
    await cluster.keepLogsIfFailed(this.currentTest, 'mailbox-cluster');
    await cluster.dispose();
  });

  function start(name: string, args: string[]): TidelineProcess {
    return cluster.start(name, args);
  }

  function spm(hostId: number): TidelineProcess {
    return cluster.spm(hostId, LEASE_EXPIRY_SECONDS, ['--doorbell', `127.0.0.1:${doorbellPorts.get(hostId)}`, '--metrics-listen', `127.0.0.1:${metricsPorts.get(hostId)}`]);
  }

  /** What the candidate's SPM counted as the causes of its quiet scans (its Prometheus metrics). */
  async function quietWakeUps(hostId: number): Promise<Record<string, number>> {
    const text = await (await fetch(`http://127.0.0.1:${metricsPorts.get(hostId)}/metrics`)).text();
    return Object.fromEntries([...text.matchAll(/^tideline_spm_quiet_wake_ups_total\{cause="([a-z-]+)"\} (\d+)/gm)].map((match) => [match[1]!, Number(match[2])]));
  }

  /** `listed`: the agent also rings every candidate (spm-doorbells), not only the doorbell the SPM names. */
  function agent(hostId: number, vm: LabVm | undefined, listed: boolean): TidelineProcess {
    const qmp = vm ? ['--qmp', `${vm.options.name}=${vm.qmpSocket}`] : [];
    return start(`agent${hostId}`, [
      'agent', ...qmp, '--domain', world.workspace.domainDir, '--mailbox', mailboxPath, '--host-id', String(hostId),
      '--chunk', '256M', '--free-target', '256M', '--poll', '0.5', '--status-file', path.join(world.dir, `status-${hostId}.json`),
      '--control-socket', path.join(world.dir, `agent-${hostId}.sock`),
      ...(listed ? ['--spm-doorbells', [...doorbellPorts.values()].map((port) => `127.0.0.1:${port}`).join(',')] : []),
    ]);
  }

  /** Two hosts run a guest writing 1 GiB each; the third host's agent has no VM. */
  async function startHosts(options: { listed: boolean }): Promise<{ vms: LabVm[]; primary: TidelineProcess; standby: TidelineProcess; agents: TidelineProcess[] }> {
    const primary = spm(1);
    await primary.waitFor('acting as SPM', 30_000);
    const standby = spm(3);
    await standby.waitFor('waiting for the SPM lease', 30_000);
    const vms = [await world.startVm({ name: 'alpha', writeMib: 1024 }), await world.startVm({ name: 'beta', writeMib: 1024 })];
    const agents = [agent(1, vms[0], options.listed), agent(2, vms[1], options.listed), agent(3, undefined, options.listed)];
    return { vms, primary, standby, agents };
  }

  function servedTargets(spms: TidelineProcess[]): Map<string, number[]> {
    const targets = new Map<string, number[]>();
    for (const event of spms.flatMap((process) => process.logged('request served'))) {
      const list = targets.get(String(event.volume)) ?? [];
      list.push(Number(event.targetBytes));
      targets.set(String(event.volume), list);
    }
    return targets;
  }

  async function assertVerified(vms: LabVm[]): Promise<void> {
    for (const vm of vms) {
      const progress = await vm.finished();
      assert.equal(progress.errors.length, 0, `${vm.options.name}: ${progress.errors.join('; ')}`);
      assert.ok(progress.result, `${vm.options.name} gave no result; console in ${vm.consoleLog}`);
      assert.equal(progress.result.bad, 0, `${vm.options.name} read back data that differs`);
      assert.equal(progress.result.units, 64);
    }
  }

  it('serves every extension through the mailbox with zero pauses, ringing the doorbell the SPM names; ignores a corrupted slot', async () => {
    const { vms, primary, standby, agents } = await startHosts({ listed: false });
    await primary.waitFor('request served', 120_000, 2);
    // Garbage in host 5's request slot while hosts 1 and 2 are being served.
    const mailbox = await Mailbox.open(mailboxPath);
    await mailbox.writeRawBlock('request', 5, Buffer.alloc(4096, 0x5a));
    await mailbox.close();

    await assertVerified(vms);
    // Logged by whoever served after the write, at most once per term: on a loaded machine a 2 s lease can lapse and
    // be taken again (by either candidate), and a new term reads the slot afresh.
    const corrupt = [primary, standby].flatMap((candidate) => candidate.logged('ignoring an unreadable request slot'));
    assert.ok(corrupt.length >= 1, 'the corrupted slot was never logged');
    assert.ok(corrupt.every((event) => event.hostId === 5), 'a slot other than host 5 was called corrupt');
    for (const candidate of [primary, standby]) {
      const terms = candidate.logged('acting as SPM').length;
      assert.ok(candidate.logged('ignoring an unreadable request slot').length <= terms, `${candidate.name} logged the corrupted slot more than once per SPM term (${terms} terms)`);
    }
    // A 2 s lease can lapse on a loaded machine and the standby take over; what must never happen is two serving at once.
    assertOneServerAtATime({ primary, standby });

    await until(async () => (await readStatus(path.join(world.dir, 'status-2.json')).catch(() => undefined))?.vms[0]?.drives[0]?.extensions !== undefined, 10_000, 'status of host 2');
    for (const [hostId, vm] of [[1, vms[0]!], [2, vms[1]!]] as const) {
      const status = await readStatus(path.join(world.dir, `status-${hostId}.json`));
      const drive = status.vms[0]!.drives[0]!;
      assert.equal(status.vms[0]!.pauses, 0, `${vm.options.name} paused`);
      assert.equal(drive.error, null);
      assert.ok(drive.extensions >= 3, `${vm.options.name}: only ${drive.extensions} extensions`);
      assert.ok((await world.plugin.describe(vm.volume)).sizeBytes >= 1024 * 1024 * 1024);
    }
    const served = servedTargets([primary, standby]);
    assert.ok((served.get('alpha-vda')?.length ?? 0) >= 3 && (served.get('beta-vda')?.length ?? 0) >= 3, 'both hosts were served by the SPM');
    // Between extensions the SPM goes quiet (seconds apart at TCG speed); the hosts' rings are what woke it. No agent
    // was told where to ring: each learned the doorbell the SPM names in its reply slot.
    assert.ok(primary.logged('listening for doorbell rings').length >= 1, 'the SPM did not listen for rings');
    for (const hostAgent of agents.slice(0, 2)) {
      const learned = hostAgent.logged("the SPM names its doorbell in this host's reply slot; ringing it after each request");
      assert.ok(learned.some((event) => event.doorbell === `127.0.0.1:${doorbellPorts.get(Number(event.spmHostId))}`), `${hostAgent.name} never learned a candidate's doorbell: ${JSON.stringify(learned)}`);
    }
    // Summed over both candidates: a lapsed lease may have moved the role (above).
    const causes = [await quietWakeUps(1), await quietWakeUps(3)];
    assert.ok(causes.reduce((sum, counts) => sum + (counts.doorbell ?? 0), 0) >= 1, `no quiet scan was woken by a ring: ${JSON.stringify(causes)}`);
  });

  it('survives kill -9 of the SPM mid-run: the standby takes over, nothing is lost or over-grown', async () => {
    const { vms, primary, standby } = await startHosts({ listed: true });
    await primary.waitFor('request served', 120_000, 2);
    await primary.kill('SIGKILL');

    await standby.waitFor('acting as SPM', 30_000);
    await assertVerified(vms);
    assert.ok(standby.logged('request served').length >= 1, 'the standby served nothing after the takeover');
    // The new SPM listens on its own doorbell; the hosts ring both candidates, so theirs reach it without a change.
    assert.ok(standby.logged('listening for doorbell rings').length >= 1, 'the new SPM did not listen for rings');

    const targets = servedTargets([primary, standby]);
    for (const vm of vms) {
      const size = (await world.plugin.describe(vm.volume)).sizeBytes;
      const highest = Math.max(...(targets.get(vm.volume) ?? [0]));
      assert.equal(size, highest, `${vm.volume} is ${size} bytes but the highest size any SPM served was ${highest}`);
      assert.ok(size >= 1024 * 1024 * 1024);
    }
  });
});
