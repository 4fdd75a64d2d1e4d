import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import Table from 'cli-table3';
import { readStatus } from '../../src/agent/status-file.js';
import { execa } from 'execa';
import { CHAIN_RECORDED_MESSAGE, COPY_ENDED_MESSAGE, DRIVE_UNPLUGGED_MESSAGE, LAYER_LEFT_MESSAGE, LAYER_REPLACED_MESSAGE } from '../../src/libvirt/libvirt-agent.js';
import { execaRunner } from '../../src/util/runner.js';
import { GiB, MiB } from '../../src/util/sizes.js';
import { RESTORED_PAUSED_MESSAGE } from '../../src/monitor/no-space-pause.js';
import { LoopPlugin } from '../../plugins/loop/index.js';
import { builtCli } from './helpers/built-cli.js';
import { ClusterWorld } from './helpers/cluster-world.js';
import { LibvirtGuest } from './helpers/libvirt-guest.js';
import { LibvirtHost } from './helpers/libvirt-host.js';
import { TidelineProcess } from './helpers/tideline-process.js';
import { until } from './helpers/watch.js';

/** Within the policy below: a 96 MiB free target is three seconds of writing at this rate. */
const WRITE_BYTES_PER_SECOND = 32 * MiB;

/**
 * An administrator's everyday virsh vocabulary on one running thin domain
 * whose guest writes and verifies throughout: `blockresize` and then writes
 * past the old size; an admin's own `snapshot-create-as` of vda onto a
 * tideline volume and a `blockpull` into it; `attach-device` of a second
 * thin disk that the guest then fills, and while it fills two snapshots, the
 * admin's own inner `blockcommit --top --base` of the middle layer, then
 * `blockcommit --active --pivot` back into the base (whose
 * volume must grow while the job writes into it) and a `blockcopy` onto
 * another tideline volume with its pivot; `detach-device`; `save` +
 * `restore` (the pulled top compared with its old base, which is then
 * deleted); `managedsave` + `start` of the domain made persistent; and a
 * save of the domain an admin suspended, which stays paused once restored.
 * After each restore the guest reads vda back. Printed as a table, one
 * row per operation: pauses, extensions, how soon the agent followed,
 * whether the data verified. Every wait is for the state that proves the
 * step (a log line, the status, the guest's own report), never a fixed time.
 */
describe('real libvirt: the virsh vocabulary on a running thin domain', function () {
  this.timeout(10 * 60_000);
  let cluster: ClusterWorld | undefined;
  let host: LibvirtHost | undefined;

  after(async () => {
    for (const process of cluster?.processes ?? []) await process.kill().catch(() => undefined);
    await host?.stop().catch(() => undefined);
    await cluster?.dispose();
  });

  it('blockresize, attach-device, snapshot-create-as, blockpull, inner and active blockcommit, detach-device, save and restore, managedsave and start, a suspend kept across a save: zero pauses, every byte verified', async () => {
    // A libvirtd of its own (private namespaces, its own hook and tideline.conf): nothing shared with the other libvirt suites.
    cluster = await ClusterWorld.create(4);
    const domainDir = cluster.lab.workspace.domainDir;
    await mkdir(path.join(domainDir, 'hosts', '1'), { recursive: true });
    const spm = cluster.spm(1, '1');
    await spm.waitFor('acting as SPM', 30_000);
    host = await LibvirtHost.start(cluster.lab.workspace, { name: '1', uuid: '7d1e0c5a-0000-4000-8000-0000000000b1', tidelineConfig: `loop-domain = ${domainDir}\nloop-view = 1\n` });
    const statusFile = path.join(cluster.dir, 'status.json');
    const controlSocket = path.join(cluster.dir, 'agent.sock');
    const agent = new TidelineProcess('agent', [
      'agent', '--libvirt', '--mailbox', cluster.mailboxPath, '--host-id', '1', '--chunk', '128M', '--free-target', '96M',
      '--hook-spool', host.hookSpool, '--poll', '0.5', '--status-file', statusFile, '--control-socket', controlSocket,
    ], { prefix: host.prefix });
    cluster.processes.push(agent);
    await agent.waitFor('following libvirt hook events', 60_000);
    const hostView = await LoopPlugin.open(domainDir, execaRunner, { hostView: '1' });
    const virsh = (...args: string[]) => host!.virsh(...args);

    // A 256 MiB image the guest writes 384 MiB into: past its end only once the admin grew it (the guest waits for
    // that, so the step does not depend on how fast this machine lets it write); then a hot-plugged vdb.
    // Both disks throttled within the policy's rate (a chunk ahead of the guest), so "no pause" holds on a loaded machine too.
    const guest = await LibvirtGuest.create(cluster, host, { domain: `tlvocab${process.pid}`, volume: 'vocab-vda', writeMib: 384, writeBytesPerSecond: WRITE_BYTES_PER_SECOND, virtualBytes: 256 * MiB, guestParameters: 'tideline.grow_wait=1 tideline.second_mib=768 tideline.linger=1', machine: 'pc' });
    const vm = async () => (await readStatus(statusFile).catch(() => undefined))?.vms.find((entry) => entry.vm === guest.domain);
    // Counted from the agent's log: the status starts again at zero for a restored domain.
    const extensions = async () => agent.logged('volume extended').filter((event) => event.vm === guest.domain).length;
    const progress = async (disk: string) => Math.max(0, ...(await guest.lines()).map((line) => (line.kind === 'progress' && line.disk === disk ? line.writtenMib : 0)));
    let consoleTail = '';
    const context = () => `guest console: ${consoleTail}\nagent: ${agent.events.slice(-15).map((event) => JSON.stringify(event)).join('\n')}`;
    const followConsole = setInterval(() => void readFile(guest.consoleLog, 'utf8').then((text) => (consoleTail = text.split('\n').slice(-25).join('\n')), () => undefined), 1_000);
    after(() => clearInterval(followConsole));
    const rows: Array<[string, number, number, string, string]> = [];
    // Pauses for lack of space so far, from the agent's log: a restored domain's status counts from zero again.
    const pauses = () => agent.logged('VM paused: a write found no space; extending, then resuming').filter((event) => event.vm === guest.domain).length;
    const row = async (operation: string, followed: string, verified: string, extensionsBefore: number) => rows.push([operation, pauses(), (await extensions()) - extensionsBefore, followed, verified]);

    // blockresize while the guest writes, then writes past the old virtual size.
    await until(async () => (await progress('vda')) >= 64, 180_000, () => `the guest to write 64 MiB; ${context()}`);
    let before = await extensions();
    const resized = await virsh('blockresize', guest.domain, 'vda', String(1 * GiB) + 'B');
    assert.equal(resized.exitCode, 0, resized.stderr);
    await until(async () => (await guest.lines()).some((line) => line.kind === 'result' && line.disk === 'vda'), 300_000, () => `the guest to verify vda; ${context()}`);
    const vdaResult = (await guest.lines()).find((line) => line.kind === 'result' && line.disk === 'vda');
    assert.ok(vdaResult?.kind === 'result' && vdaResult.bad === 0 && vdaResult.units === 24, `vda: ${JSON.stringify(vdaResult)}`);
    const vdaDrive = (await vm())!.drives.find((drive) => drive.drive === 'vda')!;
    assert.ok(vdaDrive.capBytes > GiB, `the agent's cap followed the image: ${vdaDrive.capBytes}`);
    assert.ok(vdaDrive.volumeBytes > 300 * MiB, 'the volume grew past the old image');
    assert.ok(spm.logged("the volume's image grew (its header's virtual size): recording it, the cap follows").length >= 1 || agent.logged("the drive's image grew (virtual size): its cap follows").length >= 1);
    await row('blockresize 256M -> 1G, then write past 256M', `cap ${Math.round(vdaDrive.capBytes / MiB)} MiB`, 'vda 384 MiB intact', before);

    const tideline = async (...args: string[]) => {
      const result = await execa(host!.prefix[0]!, [...host!.prefix.slice(1), 'node', builtCli(), ...args, '--socket', controlSocket], { reject: false, timeout: 120_000 });
      assert.equal(result.exitCode, 0, `tideline ${args.join(' ')}: ${result.stderr}`);
      return result.stdout;
    };
    const qemuLog = async () => `${(await readFile(path.join(host!.base, 'log', 'qemu', `${guest.domain}.log`), 'utf8').catch(() => '')).slice(-1500)}\nlibvirtd: ${(await readFile(path.join(host!.base, 'libvirtd.log'), 'utf8').catch(() => '')).slice(-2000)}`;
    /** An admin's own disk-only snapshot of `disk` onto a new tideline volume over `backing`; the new top's device. */
    const snapshotOnto = async (disk: string, top: string, backing: string): Promise<string> => {
      await tideline('volume', 'create', top, '--backing', backing, '--size', '64M');
      const device = await hostView.activate(top);
      const layersBefore = agent.logged(LAYER_REPLACED_MESSAGE).length;
      const other = disk === 'vda' ? [] : ['--diskspec', 'vda,snapshot=no'];
      const snapshot = await virsh('snapshot-create-as', guest.domain, '--disk-only', '--reuse-external', '--no-metadata', '--atomic', ...other, '--diskspec', `${disk},snapshot=external,stype=block,file=${device}`);
      assert.equal(snapshot.exitCode, 0, snapshot.stderr);
      await until(async () => agent.logged(LAYER_REPLACED_MESSAGE).length > layersBefore, 30_000, () => `the agent to watch ${disk}'s new top ${top}; ${context()}`);
      return device;
    };

    // An admin's own snapshot of vda onto a tideline volume, then a blockpull of the base into that new top, with the guest
    // done with vda (QEMU 7.2 crashed in 2 of 12 runs pulling a throttled disk the guest was writing: "reason=crashed", no
    // message, whatever tideline did); the top grows by what it pulls, and the old base, a parent no more, can be deleted.
    before = await extensions();
    const vdaTopDevice = await snapshotOnto('vda', 'vocab-vda-top', 'vocab-vda');
    const vdaBaseDevice = (await hostView.activePath('vocab-vda'))!;
    await row('snapshot-create-as vda onto a tideline volume', 'watching the new top', '-', before);
    before = await extensions();
    const vdaData = (await cluster.lab.plugin.describe('vocab-vda')).sizeBytes;
    // Within the policy's rate (unbounded, a pull into a small top outran its extensions and failed for lack of space).
    const pulled = await virsh('blockpull', guest.domain, 'vda', '--wait', '--bandwidth', '64');
    assert.equal(pulled.exitCode, 0, `${pulled.stdout}\n${pulled.stderr}\nQEMU's log: ${await qemuLog()}\n${context()}`);
    await until(async () => agent.logged(CHAIN_RECORDED_MESSAGE).some((event) => event.drive === 'vda'), 30_000, () => `the agent to have the chain recorded after the pull; ${context()}`);
    assert.equal((await cluster.lab.plugin.describe('vocab-vda-top')).tags.parent, undefined, 'the pulled top stands on nothing: no parent recorded');
    const vdaTopBytes = (await cluster.lab.plugin.describe('vocab-vda-top')).sizeBytes;
    assert.ok(vdaTopBytes >= 384 * MiB, `the top was extended to hold what it pulled: ${vdaTopBytes / MiB} MiB (the base is ${vdaData / MiB} MiB)`);
    await row('blockpull vda (the base into the top)', 'parent record removed', 'compared below, once saved', before);

    // attach-device of a second thin disk made through the SPM (`tideline volume create`), then filled; while the guest
    // fills it: an admin's own snapshot, then `virsh blockcommit --active --pivot` back into the base, then `virsh blockcopy`.
    before = await extensions();
    await tideline('volume', 'create', 'vocab-vdb', '--size', '128M', '--virtual-size', '1G');
    const vdbDevice = await hostView.activate('vocab-vdb');
    const diskXml = path.join(cluster.dir, 'vdb.xml');
    await writeFile(diskXml, `<disk type='block' device='disk'><driver name='qemu' type='qcow2' cache='none' io='native' error_policy='stop' rerror_policy='stop'/><source dev='${vdbDevice}'/><target dev='vdb' bus='virtio'/></disk>\n`);
    const attached = await virsh('attach-device', guest.domain, diskXml, '--live');
    const attachedAt = Date.now();
    assert.equal(attached.exitCode, 0, attached.stderr);
    assert.equal((await virsh('blkdeviotune', guest.domain, 'vdb', '--write-bytes-sec', String(WRITE_BYTES_PER_SECOND), '--live')).exitCode, 0);
    await until(async () => ((await vm())?.drives.find((drive) => drive.drive === 'vdb')?.thresholdBytes ?? null) !== null, 30_000, () => `vdb to be watched and armed; ${context()}`);
    const armedMs = Date.now() - attachedAt;
    await row('attach-device vdb --live, then fill it', `armed ${armedMs} ms after attach`, 'vdb 768 MiB intact (below)', before);

    before = await extensions();
    await until(async () => (await progress('vdb')) >= 64, 180_000, () => `the guest to write 64 MiB into vdb; ${context()}`);
    const vdbTopDevice = await snapshotOnto('vdb', 'vocab-vdb-top', 'vocab-vdb');
    await row('snapshot-create-as vdb onto a tideline volume', 'watching the new top', 'vdb intact (below)', before);

    // An inner commit: a second snapshot (base <- top <- top2), then the middle layer merged into the base while the guest
    // writes top2; the base, watched as a layer, grows as the job writes into it, and the SPM's record of top2's parent
    // follows (top2 now stands on the base), so the middle volume, a parent no more, can be deleted at once.
    before = await extensions();
    await until(async () => (await progress('vdb')) >= 192, 180_000, () => `the guest to write 192 MiB into vdb; ${context()}`);
    await snapshotOnto('vdb', 'vocab-vdb-top2', 'vocab-vdb-top');
    const innerChains = agent.logged(CHAIN_RECORDED_MESSAGE).length;
    const innerBaseBefore = (await cluster.lab.plugin.describe('vocab-vdb')).sizeBytes;
    const inner = await virsh('blockcommit', guest.domain, 'vdb', '--top', vdbTopDevice, '--base', vdbDevice, '--wait', '--bandwidth', '64');
    assert.equal(inner.exitCode, 0, `${inner.stdout}\n${inner.stderr}\nQEMU's log: ${await qemuLog()}\n${context()}`);
    await until(async () => agent.logged(CHAIN_RECORDED_MESSAGE).length > innerChains, 30_000, () => `the agent to follow the inner commit; ${context()}`);
    assert.equal((await cluster.lab.plugin.describe('vocab-vdb-top2')).tags.parent, 'vocab-vdb', "top2's recorded parent is the base now");
    await until(async () => agent.logged(LAYER_LEFT_MESSAGE).some((event) => event.volume === 'vocab-vdb-top'), 30_000, () => `the agent to stop watching the merged layer; ${context()}`);
    await hostView.deactivate('vocab-vdb-top');
    await tideline('volume', 'delete', 'vocab-vdb-top');
    const innerBaseAfter = (await cluster.lab.plugin.describe('vocab-vdb')).sizeBytes;
    await row("blockcommit vdb --top (inner layer) --base, the admin's own, while the guest writes", `base ${innerBaseBefore / MiB} -> ${innerBaseAfter / MiB} MiB; merged layer deleted`, 'vdb intact (below)', before);

    // By the commit the new top holds more than the base has room for (a free target and at most a chunk): only extending
    // the base while the job writes into it lets the job finish. libvirt says nothing when the job starts; the threshold
    // armed on the layer in advance sees its first writes.
    before = await extensions();
    await until(async () => (await progress('vdb')) >= 352, 180_000, () => `the guest to write 352 MiB into vdb; ${context()}`);
    const baseBeforeCommit = (await cluster.lab.plugin.describe('vocab-vdb')).sizeBytes;
    const chainsRecorded = agent.logged(CHAIN_RECORDED_MESSAGE).length;
    // Within the policy's rate, as the guest is: unbounded, a commit writes at the storage's speed, and here that is more
    // than a 96 MiB free target per extension (measured: the job failed for lack of space in one run out of three).
    const committed = await virsh('blockcommit', guest.domain, 'vdb', '--active', '--pivot', '--wait', '--bandwidth', '64');
    assert.equal(committed.exitCode, 0, `${committed.stdout}\n${committed.stderr}\nQEMU's log: ${await qemuLog()}\n${context()}`);
    await until(async () => agent.logged(CHAIN_RECORDED_MESSAGE).length > chainsRecorded, 30_000, () => `the agent to follow the commit; ${context()}`);
    const baseExtensions = agent.logged('volume extended').filter((event) => /^vdb\[\d+\]$/.test(String(event.drive)) && event.volume === 'vocab-vdb');
    assert.ok(baseExtensions.length > 0, `the base (vocab-vdb, ${baseBeforeCommit / MiB} MiB before the job) was extended while the job wrote into it; ${context()}`);
    assert.match((await virsh('domblklist', guest.domain)).stdout, new RegExp(`vdb\\s+${vdbDevice}`), 'the domain writes to the base again');
    await row("blockcommit vdb --active --pivot (the admin's own) while the guest writes", `base extended ${baseExtensions.length}x during the job`, 'vdb intact (below)', before);

    // blockcopy onto another tideline volume while the guest writes. libvirt says nothing when a copy starts, so the admin
    // creates the target as large as the disk is now plus a chunk (README: the disk may grow once before the copy is
    // seen); from the disk's next extension (or the copy's ready event) on, the copy target is kept at least as large as
    // the disk, until the admin pivots onto it.
    before = await extensions();
    const sourceMib = (await cluster.lab.plugin.describe('vocab-vdb')).sizeBytes / MiB;
    await tideline('volume', 'create', 'vocab-vdb-copy', '--size', `${sourceMib + 128}M`, '--virtual-size', '1G');
    const copyDevice = await hostView.activate('vocab-vdb-copy');
    // Faster than the guest writes, or the copy never catches up with it.
    const copied = await virsh('blockcopy', guest.domain, 'vdb', copyDevice, '--blockdev', '--reuse-external', '--format', 'qcow2', '--transient-job', '--wait', '--bandwidth', '128');
    assert.equal(copied.exitCode, 0, `${copied.stdout}\n${copied.stderr}\ncopy target ${(await cluster.lab.plugin.describe('vocab-vdb-copy')).sizeBytes / MiB} MiB, source ${(await cluster.lab.plugin.describe('vocab-vdb')).sizeBytes / MiB} MiB (${sourceMib} MiB at the start)\nQEMU's log: ${await qemuLog()}\n${context()}`);
    await until(async () => agent.logged('watching thin drive').some((event) => event.drive === 'vdb@copy'), 30_000, () => `the agent to keep the copy target as large as vdb; ${context()}`);
    const copyAsLarge = async () => (await cluster!.lab.plugin.describe('vocab-vdb-copy')).sizeBytes >= (await cluster!.lab.plugin.describe('vocab-vdb')).sizeBytes;
    await until(copyAsLarge, 30_000, () => `the copy target to be as large as vdb; ${context()}`);
    const pivoted = await virsh('blockjob', guest.domain, 'vdb', '--pivot');
    assert.equal(pivoted.exitCode, 0, `${pivoted.stdout}\n${pivoted.stderr}`);
    assert.match((await virsh('domblklist', guest.domain)).stdout, new RegExp(`vdb\\s+${copyDevice}`), 'the domain writes to the copy');
    await until(async () => agent.logged(COPY_ENDED_MESSAGE).some((event) => event.drive === 'vdb@copy'), 30_000, () => `the agent to see the copy pivot; ${context()}`);
    const copyExtensions = agent.logged('volume extended').filter((event) => event.drive === 'vdb@copy').length;
    await until(async () => (await guest.lines()).some((line) => line.kind === 'done'), 300_000, () => `the guest to verify vdb; ${context()}`);
    for (const [disk, units] of [['vda', 24], ['vdb', 48]] as const) {
      const result = (await guest.lines()).find((line) => line.kind === 'result' && line.disk === disk);
      assert.ok(result?.kind === 'result' && result.bad === 0 && result.units === units, `${disk}: ${JSON.stringify(result)}`);
    }
    assert.deepEqual((await guest.lines()).filter((line) => line.kind === 'error'), []);
    await row('blockcopy vdb --reuse-external, then --pivot, while the guest writes', `copy target kept as large as vdb (${copyExtensions} extensions)`, 'vdb 768 MiB intact', before);

    // detach-device: no longer watched, and the volumes can be let go.
    before = await extensions();
    const detached = await virsh('detach-device', guest.domain, diskXml, '--live');
    assert.equal(detached.exitCode, 0, detached.stderr);
    await until(async () => agent.logged(DRIVE_UNPLUGGED_MESSAGE).some((event) => event.drive === 'vdb'), 60_000, () => `the agent to drop vdb; ${context()}`);
    await until(async () => (await vm())?.drives.every((drive) => drive.drive === 'vda') ?? false, 10_000, 'the status to list vda only');
    for (const volume of ['vocab-vdb-copy', 'vocab-vdb-top2', 'vocab-vdb']) await hostView.deactivate(volume);
    await row('detach-device vdb --live', 'dropped; volumes deactivated', '-', before);

    // vdc, a small plain file plugged in and out, asks the lingering guest (its vdb unplugged) to read vda back again (src/lab/guest-init.ts):
    // what a restored QEMU shows the guest is what it wrote.
    const signalFile = path.join(cluster.dir, 'vdc.img');
    const signalXml = path.join(cluster.dir, 'vdc.xml');
    await writeFile(signalFile, Buffer.alloc(MiB));
    await writeFile(signalXml, `<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='${signalFile}'/><target dev='vdc' bus='virtio'/></disk>\n`);
    let rounds = 0;
    const readVdaAgain = async () => {
      const round = ++rounds;
      const plugged = await virsh('attach-device', guest.domain, signalXml, '--live');
      assert.equal(plugged.exitCode, 0, plugged.stderr);
      const again = async () => (await guest.lines()).find((line) => line.kind === 'result' && line.disk === 'vda' && line.round === round);
      await until(async () => (await again()) !== undefined, 180_000, () => `the guest to read vda back (round ${round}); ${context()}`);
      const result = await again();
      assert.ok(result?.kind === 'result' && result.bad === 0 && result.units === 24, `vda read back, round ${round}: ${JSON.stringify(result)}`);
      const unplugged = await virsh('detach-device', guest.domain, signalXml, '--live');
      assert.equal(unplugged.exitCode, 0, unplugged.stderr);
      await until(async () => !(await virsh('domblklist', guest.domain)).stdout.includes('vdc'), 60_000, 'vdc to be unplugged');
    };

    // save + restore: the same QEMU state from a file; the agent watches the restored domain at once.
    before = await extensions();
    const saveFile = path.join(cluster.dir, 'vocab.save');
    assert.equal((await virsh('save', guest.domain, saveFile)).exitCode, 0);
    await until(async () => (await vm()) === undefined, 30_000, 'the saved domain to leave the status');
    // Saved, QEMU has written out everything it held (a running one keeps qcow2 tables in memory): what the guest sees
    // through the pulled top alone is what it wrote through the old base (it wrote nothing to vda since). Then that base,
    // a parent no more, goes through the SPM.
    const compared = await execa('qemu-img', ['compare', '-f', 'qcow2', '-F', 'qcow2', vdaTopDevice, vdaBaseDevice], { reject: false, timeout: 120_000 });
    assert.equal(compared.exitCode, 0, `the pulled top reads as the base did: ${compared.stdout} ${compared.stderr}`);
    await hostView.deactivate('vocab-vda');
    await tideline('volume', 'delete', 'vocab-vda');
    await assert.rejects(cluster.lab.plugin.describe('vocab-vda'), { code: 'volume-not-found' });
    const monitoringBefore = agent.logged('monitoring VM').length;
    const restored = await virsh('restore', saveFile);
    assert.equal(restored.exitCode, 0, restored.stderr);
    await host.recordQemu(guest.domain);
    await until(async () => agent.logged('monitoring VM').length > monitoringBefore, 60_000, () => `the agent to watch the restored domain; ${context()}`);
    await until(async () => ((await vm())?.drives[0]?.thresholdBytes ?? null) !== null, 30_000, 'the restored drive to be armed');
    assert.match((await virsh('domstate', '--reason', guest.domain)).stdout, /^running/);
    await readVdaAgain();
    await row('save + restore', 'watched and armed again; the pulled base deleted', 'pulled top = old base; vda read back in the guest', before);

    // managedsave + start: the domain made persistent first (libvirt keeps a managed save only for a defined domain).
    before = await extensions();
    const definition = path.join(cluster.dir, 'vocab-domain.xml');
    await writeFile(definition, (await virsh('dumpxml', '--inactive', guest.domain)).stdout);
    const defined = await virsh('define', definition);
    assert.equal(defined.exitCode, 0, defined.stderr);
    const saved = await virsh('managedsave', guest.domain);
    assert.equal(saved.exitCode, 0, saved.stderr);
    await until(async () => (await vm()) === undefined, 30_000, 'the managed-saved domain to leave the status');
    assert.match((await virsh('domstate', '--reason', guest.domain)).stdout, /saved/);
    const monitoringBeforeStart = agent.logged('monitoring VM').length;
    const started = await virsh('start', guest.domain);
    assert.equal(started.exitCode, 0, started.stderr);
    await host.recordQemu(guest.domain);
    await until(async () => agent.logged('monitoring VM').length > monitoringBeforeStart, 60_000, () => `the agent to watch the domain started from its managed save; ${context()}`);
    await until(async () => ((await vm())?.drives[0]?.thresholdBytes ?? null) !== null, 30_000, 'the drive to be armed after start');
    assert.match((await virsh('domstate', '--reason', guest.domain)).stdout, /^running/);
    await readVdaAgain();
    await row('managedsave + start', 'watched and armed again', 'vda read back in the guest', before);

    // An admin's suspend survives a save: libvirt restores the domain "paused (migrating)", as it does one saved while
    // paused for lack of space, and only the pause mark (absent here) would make it tideline's to resume.
    before = await extensions();
    assert.equal((await virsh('suspend', guest.domain)).exitCode, 0);
    const suspendedFile = path.join(cluster.dir, 'vocab-suspended.save');
    assert.equal((await virsh('save', guest.domain, suspendedFile)).exitCode, 0);
    await until(async () => (await vm()) === undefined, 30_000, 'the saved domain to leave the status');
    const monitoringBeforeSuspendedRestore = agent.logged('monitoring VM').length;
    const restoredSuspended = await virsh('restore', suspendedFile);
    assert.equal(restoredSuspended.exitCode, 0, restoredSuspended.stderr);
    await host.recordQemu(guest.domain);
    await until(async () => agent.logged('monitoring VM').length > monitoringBeforeSuspendedRestore, 60_000, () => `the agent to watch the restored domain; ${context()}`);
    // Its pause read as the admin's, not as a migration coming in.
    await until(async () => (await vm())?.migration === null && (await vm())?.drives.length === 1, 30_000, 'the status to show the restored domain, not migrating in');
    assert.match((await virsh('domstate', '--reason', guest.domain)).stdout, /^paused/);
    assert.equal(agent.logged(RESTORED_PAUSED_MESSAGE).length, 0, 'nothing took over the admin\'s pause');
    assert.equal((await virsh('resume', guest.domain)).exitCode, 0);
    await readVdaAgain();
    await row('suspend + save + restore', 'left paused (the admin\'s); watched', 'vda read back once the admin resumed', before);

    const table = new Table({ head: ['operation', 'pauses so far', 'extensions', 'tideline', 'data'], style: { head: [], border: [] } });
    for (const entry of rows) table.push(entry);
    console.log(`\n${table.toString()}`);
    for (const [operation, pauses] of rows) assert.equal(pauses, 0, `${operation}: the domain paused`);
    assert.ok(armedMs < 5_000, `the hot-plugged disk was armed ${armedMs} ms after attach-device`);
  });
});
