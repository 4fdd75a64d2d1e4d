import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { readStatus } from '../../src/agent/status-file.js';
import { initLeaseVolume } from '../../src/lease/open-storage-lease.js';
import { Mailbox } from '../../src/mailbox/mailbox.js';
import { ensureLibvirtd, LibvirtGuest, restartLibvirtd, sweepTestDomains, virsh } from './helpers/libvirt-world.js';
import { LabWorld } from './helpers/lab-world.js';
import { DIRECT_UNUSABLE_MESSAGE } from '../../src/libvirt/remote/direct-libvirt.js';
import { SETTINGS_FOLLOWED_MESSAGE } from '../../src/libvirt/libvirt-agent.js';
import { TidelineProcess } from './helpers/tideline-process.js';
import { until } from './helpers/watch.js';
import { builtCli } from './helpers/built-cli.js';

/**
 * Domains started with virsh, watched by `tideline agent --libvirt`, every
 * extension through the mailbox and the SPM.
 */
describe('real libvirt: tideline under virsh', function () {
  this.timeout(5 * 60_000);
  let libvirtd: { ours: boolean; stop(): Promise<void> };
  let libvirtdIsOurs = false;
  let world: LabWorld;
  let guests: LibvirtGuest[] = [];
  let processes: TidelineProcess[] = [];
  let statusFile: string;
  let hookSpool: string;

  before(async () => {
    // The hook as the package installs it, before libvirtd starts: libvirtd
    // looks for qemu hooks only when it starts (see `tideline doctor`).
    hookSpool = await mkdtemp('/var/tmp/tideline-test-hook-spool-');
    const installed = await execa('node', [builtCli(), 'hook', 'install', '--spool', hookSpool], { reject: false, timeout: 30_000 });
    assert.equal(installed.exitCode, 0, installed.stderr);
    libvirtd = await ensureLibvirtd();
    libvirtdIsOurs = libvirtd.ours;
    await sweepTestDomains();
  });
  after(async () => {
    await libvirtd?.stop();
    await execa('node', [builtCli(), 'hook', 'uninstall'], { reject: false, timeout: 30_000 });
    if (hookSpool) await rm(hookSpool, { recursive: true, force: true });
  });

  let mailbox: string;
  let leases: string;

  beforeEach(async () => {
    world = await LabWorld.create();
    mailbox = path.join(world.dir, 'mailbox');
    leases = path.join(world.dir, 'leases');
    await Mailbox.init(mailbox, { maxHosts: 4 });
    await initLeaseVolume(leases, 4);
    statusFile = path.join(world.dir, 'status.json');
  });

  /** The SPM (optionally slow) and this host's agent following libvirt. */
  /**
   * The ENOSPC cases give the agent a small free target: the guest then has to
   * write only a few MiB before it reaches the end of the volume while the slow
   * SPM sits on the request, so the pause happens however slowly a loaded
   * machine lets the TCG guest write.
   */
  async function startTideline(options: { spmDelayMs?: number; freeTarget?: string } = {}): Promise<void> {
    const spm = new TidelineProcess('spm', ['spm', '--lease-backend', 'storage', '--mailbox', mailbox, '--lease', leases, '--host-id', '1', '--domain', world.workspace.domainDir, '--lease-expiry', '1', '--extend-delay', String(options.spmDelayMs ?? 0)]);
    processes.push(spm);
    await spm.waitFor('acting as SPM', 30_000);
    startAgent(options.freeTarget);
  }

  function startAgent(freeTarget = '256M'): TidelineProcess {
    const agent = new TidelineProcess('agent', [
      'agent', '--libvirt', '--domain', world.workspace.domainDir, '--mailbox', mailbox, '--host-id', '2',
      '--chunk', '256M', '--free-target', freeTarget, '--hook-spool', hookSpool, '--poll', '0.5', '--status-file', statusFile, '--control-socket', path.join(world.dir, 'agent.sock'),
    ]);
    processes.push(agent);
    return agent;
  }

  /** Every domain a test starts is destroyed after it, whatever the test's outcome. */
  async function startGuest(options: Parameters<typeof LibvirtGuest.start>[1]): Promise<LibvirtGuest> {
    const guest = await LibvirtGuest.start(world, options);
    guests.push(guest);
    return guest;
  }

  async function waitForState(guest: LibvirtGuest, pattern: RegExp, timeoutMs: number): Promise<void> {
    await until(async () => pattern.test(await guest.state()), timeoutMs, `${guest.domain} to be ${pattern}`);
  }

  afterEach(async () => {
    for (const guest of guests) await guest.destroy();
    for (const process of processes) await process.kill().catch(() => undefined);
    guests = [];
    processes = [];
    await world.dispose();
  });

  async function driveStatus(guest: LibvirtGuest) {
    const status = await readStatus(statusFile).catch(() => undefined);
    return status?.vms.find((vm) => vm.vm === guest.domain);
  }

  it('grows the thin disk of a domain started with virsh: 1 GiB written, zero pauses, data verified', async () => {
    await startTideline();
    // Until the agent follows its spool, the hook has nowhere to leave events (the agent's first scan covers them).
    await processes[1]!.waitFor('following libvirt hook events', 60_000);
    const guest = await startGuest({ name: 'web', writeMib: 1024 });
    const result = await guest.result(180_000);
    assert.equal(result.bad, 0, 'data read back differs');
    assert.equal(result.units, 64);
    await until(async () => ((await driveStatus(guest))?.drives[0]?.extensions ?? 0) >= 3, 10_000, 'the status to show the extensions');
    const status = (await driveStatus(guest))!;
    const agentLog = processes[1]!.events.filter((event) => ['request served', 'VM paused for lack of space', 'write threshold crossed', 'extended', 'watching thin drive', 'monitoring VM'].some((text) => String(event.msg).includes(text)) || String(event.msg).includes('paus'));
    assert.equal(status.pauses, 0, `the domain paused:\n${agentLog.map((event) => JSON.stringify(event)).join('\n')}`);
    assert.ok((await world.plugin.describe(guest.volume)).sizeBytes >= 1024 * 1024 * 1024);
    const served = processes[0]!.logged('request served');
    assert.ok(served.length >= 3 && served.every((event) => event.volume === guest.volume), 'extensions did not go through the SPM');
    assert.deepEqual(processes[1]!.logged(DIRECT_UNUSABLE_MESSAGE), [], 'the agent asked virsh instead of libvirtd\'s socket');
    if (libvirtdIsOurs) {
      // A libvirtd this suite did not start may have started before any qemu hook existed, and then never runs one.
      const hookEvents = processes[1]!.logged('libvirt hook reported a domain event; rescanning').filter((event) => event.vm === guest.domain);
      assert.ok(hookEvents.some((event) => event.operation === 'started'), 'libvirtd ran the installed hook, but the agent never heard of the start');
    }
  });

  it('leaves a domain suspended with virsh suspended, and goes on after virsh resume', async () => {
    await startTideline();
    const guest = await startGuest({ name: 'db', writeMib: 768 });
    await until(async () => ((await driveStatus(guest))?.drives[0]?.extensions ?? 0) >= 1, 120_000, 'a first extension');
    assert.equal((await virsh('suspend', guest.domain)).exitCode, 0);
    await new Promise((resolve) => setTimeout(resolve, 4_000));
    assert.match(await guest.state(), /^paused \(user\)$/, 'tideline resumed a domain an administrator suspended');
    assert.equal((await virsh('resume', guest.domain)).exitCode, 0);
    const result = await guest.result(180_000);
    assert.equal(result.bad, 0);
    assert.equal(result.units, 48);
  });

  it('with a slow SPM: virsh shows the domain paused for an I/O error, then tideline resumes it and the data is intact', async () => {
    await startTideline({ spmDelayMs: 5_000, freeTarget: '16M' });
    const guest = await startGuest({ name: 'slow', writeMib: 768 });
    await waitForState(guest, /^paused \(I\/O error\)$/, 120_000);
    await waitForState(guest, /^running/, 30_000);
    const result = await guest.result(240_000);
    assert.equal(result.bad, 0);
    assert.equal(result.units, 48);
    assert.ok(((await driveStatus(guest))?.pauses ?? 0) >= 1, 'the status does not count the pause');
  });

  it('an agent restarted while the domain is paused for ENOSPC finds it, extends and resumes it', async () => {
    await startTideline({ spmDelayMs: 5_000, freeTarget: '16M' });
    const guest = await startGuest({ name: 'restart', writeMib: 512 });
    await waitForState(guest, /^paused \(I\/O error\)$/, 120_000);
    await processes[1]!.kill();
    startAgent('16M');
    const result = await guest.result(240_000);
    assert.equal(result.bad, 0);
    assert.equal(result.units, 32);
  });

  it('keeps going across a libvirtd restart: thresholds re-armed, nothing left paused', async function () {
    if (!libvirtdIsOurs) this.skip(); // a libvirtd this suite did not start is not ours to restart
    await startTideline();
    const guest = await startGuest({ name: 'survivor', writeMib: 1024 });
    await until(async () => ((await driveStatus(guest))?.drives[0]?.extensions ?? 0) >= 2, 120_000, 'two extensions');
    await restartLibvirtd();
    const result = await guest.result(240_000);
    assert.equal(result.bad, 0);
    assert.equal(result.units, 64);
    assert.ok(processes[1]!.logged('libvirt event stream ended; reconnecting').length >= 1, 'the agent did not notice the restart');
    assert.ok(((await driveStatus(guest))?.drives[0]?.extensions ?? 0) >= 3);
  });

  it('takes per-disk policy from domain metadata set with tideline policy, and refuses bad policy', async () => {
    await startTideline();
    const guest = await startGuest({ name: 'policy', writeMib: 256 });
    const agent = processes[1]!;
    await agent.waitFor('monitoring VM', 60_000);
    const tideline = (...args: string[]) => execa('node', [builtCli(), ...args], { reject: false, timeout: 60_000 });
    const set = await tideline('policy', 'set', guest.domain, '--disk', 'vda', '--chunk', '128M', '--free-target', '96M');
    assert.equal(set.exitCode, 0, set.stderr);
    const shown = JSON.parse((await tideline('policy', 'show', guest.domain, '--json')).stdout) as { disks: Record<string, unknown> };
    assert.deepEqual(shown.disks, { vda: { chunk: 128 * 1024 * 1024, freeTarget: 96 * 1024 * 1024 } });
    // Followed in place: the drive is reconfigured, not watched again from scratch.
    await agent.waitFor(SETTINGS_FOLLOWED_MESSAGE, 30_000);
    assert.equal(agent.logged('monitoring VM').filter((event) => event.vm === guest.domain).length, 1, 'the domain was attached again for a policy change');

    const inverted = await tideline('policy', 'set', guest.domain, '--chunk', '64M', '--free-target', '128M');
    assert.equal(inverted.exitCode, 2, inverted.stderr);
    assert.match(inverted.stderr, /free target 128\.0 MiB exceeds the chunk 64\.0 MiB/);
    const unknown = await tideline('policy', 'show', 'no-such-domain');
    assert.equal(unknown.exitCode, 1);
    assert.match(unknown.stderr, /no-such-domain|failed to get domain/i);

    const result = await guest.result(180_000);
    assert.equal(result.bad, 0);
  });

  it('tideline doctor flags a thin disk without error_policy=stop, and the agent logs it as an error', async () => {
    await startTideline();
    const guest = await startGuest({ name: 'careless', writeMib: 64, errorPolicy: 'report' });
    await processes[1]!.waitFor("thin disk without error_policy='stop': a write that finds no space fails in the guest instead of pausing the VM; set error_policy='stop'", 60_000);
    const config = path.join(world.dir, 'tideline.conf');
    await writeFile(config, `loop-domain = ${world.workspace.domainDir}\nmailbox = ${mailbox}\nhost-id = 2\n`);
    // The SPM unit's flags give it another host id than the file the agent reads.
    const sysconfig = path.join(world.dir, 'sysconfig-tideline');
    await writeFile(sysconfig, 'TIDELINE_AGENT_ARGS="--libvirt"\nTIDELINE_SPM_ARGS="--host-id 1"\n');
    const doctor = await execa('node', [builtCli(), 'doctor', '--json', '--config', config, '--sysconfig', sysconfig, '--hook', path.join(world.dir, 'no-hook')], { reject: false, timeout: 60_000 });
    assert.equal(doctor.exitCode, 1, doctor.stderr);
    const findings = JSON.parse(doctor.stdout) as Array<{ check: string; status: string; detail: string }>;
    const byCheck = new Map(findings.map((finding) => [finding.check, finding]));
    assert.equal(byCheck.get('configuration')?.status, 'ok');
    assert.equal(byCheck.get('storage domain')?.status, 'ok');
    assert.equal(byCheck.get('mailbox')?.status, 'ok');
    assert.equal(byCheck.get('libvirtd')?.status, 'ok');
    assert.equal(byCheck.get('libvirt socket')?.status, 'ok', byCheck.get('libvirt socket')?.detail);
    assert.equal(byCheck.get('libvirt hook')?.status, 'warn');
    assert.equal(byCheck.get('agent and SPM agree')?.status, 'fail');
    assert.match(byCheck.get('agent and SPM agree')!.detail, /host-id: the agent has 2 \(the configuration file\), the SPM 1/);
    assert.equal(byCheck.get('SPM lease')?.status, 'warn');
    const disk = byCheck.get(`${guest.domain} vda`);
    assert.equal(disk?.status, 'fail');
    assert.match(disk!.detail, /the GUEST gets I\/O errors instead of a pause/);

    await writeFile(config, `loop-domain = ${world.workspace.domainDir}\nhost-id = two\n`);
    const broken = await execa('node', [builtCli(), 'doctor', '--json', '--config', config], { reject: false, timeout: 60_000 });
    assert.match(JSON.parse(broken.stdout)[0].detail, /tideline\.conf:2: host-id/);
  });
});
