import assert from 'node:assert/strict';
import path from 'node:path';
import { readStatus } from '../../src/agent/status-file.js';
import { initLeaseVolume } from '../../src/lease/open-storage-lease.js';
import { Mailbox } from '../../src/mailbox/mailbox.js';
import { ensureLibvirtd, LibvirtGuest, sweepTestDomains, virsh } from './helpers/libvirt-world.js';
import { LabWorld } from './helpers/lab-world.js';
import { TidelineProcess } from './helpers/tideline-process.js';
import { until } from './helpers/watch.js';

/**
 * Domains started with virsh, watched by `tideline agent --libvirt`, every
 * extension through the mailbox and the SPM.
 */
describe('real libvirt: tideline under virsh', function () {
  this.timeout(5 * 60_000);
  let libvirtd: { stop(): Promise<void> };
  let world: LabWorld;
  let guests: LibvirtGuest[] = [];
  let processes: TidelineProcess[] = [];
  let statusFile: string;

  before(async () => {
    libvirtd = await ensureLibvirtd();
    await sweepTestDomains();
  });
  after(async () => {
    await libvirtd?.stop();
  });

  beforeEach(async () => {
    world = await LabWorld.create();
    const mailbox = path.join(world.dir, 'mailbox');
    const leases = path.join(world.dir, 'leases');
    await Mailbox.init(mailbox, { maxHosts: 4 });
    await initLeaseVolume(leases, 4);
    statusFile = path.join(world.dir, 'status.json');
    const spm = new TidelineProcess('spm', ['spm', '--mailbox', mailbox, '--lease', leases, '--host-id', '1', '--domain', world.workspace.domainDir, '--lease-expiry', '1']);
    processes.push(spm);
    await spm.waitFor('acting as SPM', 30_000);
    processes.push(
      new TidelineProcess('agent', [
        'agent', '--libvirt', '--domain', world.workspace.domainDir, '--mailbox', mailbox, '--host-id', '2',
        '--chunk', '256M', '--free-target', '256M', '--poll', '0.5', '--status-file', statusFile, '--control-socket', path.join(world.dir, 'agent.sock'),
      ]),
    );
  });
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
    const guest = await LibvirtGuest.start(world, { name: 'web', writeMib: 1024 });
    guests.push(guest);
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
  });

  it('leaves a domain suspended with virsh suspended, and goes on after virsh resume', async () => {
    const guest = await LibvirtGuest.start(world, { name: 'db', writeMib: 768 });
    guests.push(guest);
    await until(async () => ((await driveStatus(guest))?.drives[0]?.extensions ?? 0) >= 1, 120_000, 'a first extension');
    assert.equal((await virsh('suspend', guest.domain)).exitCode, 0);
    await new Promise((resolve) => setTimeout(resolve, 4_000));
    assert.match(await guest.state(), /^paused \(user\)$/, 'tideline resumed a domain an administrator suspended');
    assert.equal((await virsh('resume', guest.domain)).exitCode, 0);
    const result = await guest.result(180_000);
    assert.equal(result.bad, 0);
    assert.equal(result.units, 48);
  });
});
