import assert from 'node:assert/strict';
import { LAYER_REPLACED_MESSAGE } from '../../src/libvirt/libvirt-agent.js';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { LoopPlugin } from '../../plugins/loop/index.js';
import { parseGuestLine, type GuestLine } from '../../src/lab/guest-report.js';
import { labDomainXml } from '../../src/lab/libvirt-domain.js';
import { execaRunner } from '../../src/util/runner.js';
import { GiB, MiB } from '../../src/util/sizes.js';
import { ClusterWorld } from './helpers/cluster-world.js';
import { labBootImage } from './helpers/lab-world.js';
import { LibvirtHost } from './helpers/libvirt-host.js';
import { TidelineProcess } from './helpers/tideline-process.js';
import { until } from './helpers/watch.js';
import { builtCli } from './helpers/built-cli.js';

/**
 * `tideline snapshot create` on a running libvirt domain whose guest writes:
 * the SPM creates the new top over the current one, libvirt switches the
 * domain onto it, the agent follows the new top. One host (its own libvirtd,
 * tests/integration/helpers/libvirt-host.ts, so QEMU may open the lab's
 * volume files as backing files), the SPM and the agent.
 */
const WRITE_MIB = 1280;
const THROTTLE_BYTES_PER_SECOND = 24 * MiB;
const PAUSED = 'VM paused: a write found no space; extending, then resuming';
const FOLLOWED = LAYER_REPLACED_MESSAGE;

describe('real libvirt: live snapshot onto a new thin volume while the guest writes', function () {
  this.timeout(8 * 60_000);
  let cluster: ClusterWorld;
  let host: LibvirtHost | undefined;

  beforeEach(async () => {
    cluster = await ClusterWorld.create(4);
  });
  afterEach(async () => {
    for (const process of cluster.processes) await process.kill().catch(() => undefined);
    await host?.stop().catch(() => undefined);
    host = undefined;
    await cluster.dispose();
  });

  async function consoleLines(file: string): Promise<GuestLine[]> {
    return (await readFile(file, 'utf8').catch(() => '')).split('\n').map(parseGuestLine).filter((line): line is GuestLine => line !== undefined);
  }

  it('snapshots (tideline and plain virsh), an active and an inner commit during a write: zero pauses; only the active layer grows; merged volumes are gone; data intact; a parent cannot be deleted', async () => {
    const domainDir = cluster.lab.workspace.domainDir;
    await mkdir(path.join(domainDir, 'hosts', '1'), { recursive: true });
    const spm = cluster.spm(1, '2');
    await spm.waitFor('acting as SPM', 30_000);
    host = await LibvirtHost.start(cluster.lab.workspace, { name: '1', uuid: '7d1e0c5a-0000-4000-8000-0000000000a1', tidelineConfig: `loop-domain = ${domainDir}\nloop-view = 1\n` });
    const socket = path.join(cluster.dir, 'agent.sock');
    const agent = new TidelineProcess('agent', [
      'agent', '--libvirt', '--mailbox', cluster.mailboxPath, '--host-id', '1', '--chunk', '64M', '--free-target', '64M',
      '--hook-spool', host.hookSpool, '--poll', '0.5', '--status-file', path.join(cluster.dir, 'status.json'), '--control-socket', socket,
    ], { prefix: host.prefix });
    cluster.processes.push(agent);
    await agent.waitFor('following libvirt hook events', 60_000);

    const domain = `tlsnap${process.pid}`;
    let innerCommitStarted = Number.MAX_SAFE_INTEGER;
    const base = 'snap-vda';
    await cluster.lab.plugin.create(base, 128 * MiB, { vm: domain, 'virtual-bytes': String(4 * GiB) });
    const devicePath = await (await LoopPlugin.open(domainDir, execaRunner, { hostView: '1' })).activate(base);
    await execaRunner('qemu-img', ['create', '-q', '-f', 'qcow2', devicePath, String(4 * GiB)]);
    const consoleLog = path.join(cluster.dir, 'snap.console.log');
    const xmlFile = path.join(cluster.dir, 'snap.xml');
    await writeFile(xmlFile, labDomainXml({ name: domain, boot: await labBootImage(), devicePath, consoleLog, writeMib: WRITE_MIB }));
    assert.equal((await host.virsh('create', xmlFile)).exitCode, 0);
    await host.recordQemu(domain);
    assert.equal((await host.virsh('blkdeviotune', domain, 'vda', '--write-bytes-sec', String(THROTTLE_BYTES_PER_SECOND), '--live')).exitCode, 0);
    const written = async () => Math.max(0, ...(await consoleLines(consoleLog)).map((line) => (line.kind === 'progress' ? line.writtenMib : 0)));
    await until(async () => (await written()) >= 160, 180_000, 'the guest to write 160 MiB');

    const tideline = (...args: string[]) => execa(host!.prefix[0]!, [...host!.prefix.slice(1), 'node', builtCli(), ...args], { reject: false, timeout: 120_000 });
    const snapshot = await tideline('snapshot', 'create', domain, '--disk', 'vda', '--size', '96M', '--socket', socket);
    assert.equal(snapshot.exitCode, 0, snapshot.stderr);
    const top = /now writes to (\S+) /.exec(snapshot.stdout)?.[1];
    assert.ok(top, snapshot.stdout);
    const baseSizeAtSnapshot = (await cluster.lab.plugin.describe(base)).sizeBytes;
    await agent.waitFor(FOLLOWED, 30_000);
    const chain = (await host.virsh('domblklist', domain, '--details')).stdout;
    assert.match(chain, new RegExp(`hosts/1/${top}`), 'libvirt writes to the new top');
    const bad = await tideline('snapshot', 'create', domain, '--disk', 'vdz', '--socket', socket);
    assert.equal(bad.exitCode, 1);
    assert.match(bad.stderr, /has no disk vdz \(its disks: vda\)/);

    // An administrator's own snapshot with plain virsh, onto a tideline volume made over the current top.
    await until(async () => (await written()) >= 400, 180_000, 'the guest to write 400 MiB');
    const byHand = `${top}-byhand`;
    const made = await tideline('volume', 'create', byHand, '--backing', top, '--size', '96M', '--socket', socket);
    assert.equal(made.exitCode, 0, made.stderr);
    const byHandPath = await (await LoopPlugin.open(domainDir, execaRunner, { hostView: '1' })).activate(byHand);
    const virshSnapshot = await host.virsh('snapshot-create-as', domain, '--disk-only', '--reuse-external', '--no-metadata', '--atomic', '--diskspec', `vda,snapshot=external,stype=block,file=${byHandPath}`);
    assert.equal(virshSnapshot.exitCode, 0, virshSnapshot.stderr);
    const topSizeAtSecond = (await cluster.lab.plugin.describe(top)).sizeBytes;
    await agent.waitFor(FOLLOWED, 30_000, 2);

    // Merge the layer made by hand back into the one below, the guest still writing.
    await until(async () => (await written()) >= 560, 180_000, 'the guest to write 560 MiB');
    assert.equal((await cluster.lab.plugin.describe(top)).sizeBytes, topSizeAtSecond, 'the layer under the one made by hand did not grow');
    // What the layer made by hand holds, read independently of how tideline measures it: its allocated clusters.
    const checked = JSON.parse((await execaRunner('qemu-img', ['check', '--output=json', '-U', byHandPath], { acceptExitCodes: [2, 3] })).stdout) as { 'allocated-clusters': number };
    const byHandData = checked['allocated-clusters'] * 65536;
    const committed = await tideline('snapshot', 'commit', domain, '--disk', 'vda', '--socket', socket);
    assert.equal(committed.exitCode, 0, committed.stderr);
    assert.match(committed.stdout, new RegExp(`${byHand} merged into ${top}`));
    assert.match(committed.stdout, new RegExp(`${top} is the active layer now and keeps`), 'an active commit leaves the written base its size');
    await agent.waitFor(FOLLOWED, 30_000, 3);
    await assert.rejects(cluster.lab.plugin.describe(byHand), { code: 'volume-not-found' }, 'the merged volume is gone');
    assert.ok((await cluster.lab.plugin.describe(top)).sizeBytes >= Math.min(topSizeAtSecond + byHandData, 4 * GiB), 'the base was extended by at least what the merged layer held before the job');
    assert.match((await host.virsh('domblklist', domain)).stdout, new RegExp(`hosts/1/${top}\\s*$`, 'm'), 'the domain runs on the base again');

    // Another snapshot, then an inner commit: the layer under the active one is merged into the first base.
    const again = await tideline('snapshot', 'create', domain, '--disk', 'vda', '--size', '96M', '--socket', socket);
    assert.equal(again.exitCode, 0, again.stderr);
    const newest = /now writes to (\S+) /.exec(again.stdout)![1]!;
    await agent.waitFor(FOLLOWED, 30_000, 4);
    innerCommitStarted = Date.now();
    const inner = await tideline('snapshot', 'commit', domain, '--disk', 'vda', '--top', top, '--socket', socket, '--free-target', '64M');
    assert.equal(inner.exitCode, 0, inner.stderr);
    assert.match(inner.stdout, new RegExp(`${top} merged into ${base} .*; merged volumes zeroed and deleted; ${base} reduced to `));
    const servedForInner = spm.logged('request served').filter((event) => event.volume === base && Number(event.time) >= innerCommitStarted);
    const extendedForMerge = Math.max(...servedForInner.filter((event) => event.operation === 'Extend').map((event) => Number(event.resultBytes)));
    const baseAfterReduce = (await cluster.lab.plugin.describe(base)).sizeBytes;
    assert.ok(servedForInner.some((event) => event.operation === 'Reduce' && Number(event.resultBytes) === baseAfterReduce), 'the SPM reduced the base after the merge');
    assert.ok(baseAfterReduce < extendedForMerge, `the base gave space back: ${extendedForMerge / MiB} MiB for the merge, ${baseAfterReduce / MiB} MiB after`);
    await assert.rejects(cluster.lab.plugin.describe(top), { code: 'volume-not-found' });
    assert.equal((await cluster.lab.plugin.describe(newest)).tags.parent, base, 'the active layer now stands on the base');
    assert.match((await host.virsh('domblklist', domain)).stdout, new RegExp(`hosts/1/${newest}\\s*$`, 'm'), 'the active layer stayed');

    await until(async () => (await consoleLines(consoleLog)).some((line) => line.kind === 'result'), 300_000, 'the guest to report its result');
    const result = (await consoleLines(consoleLog)).find((line) => line.kind === 'result');
    assert.ok(result?.kind === 'result');
    assert.equal(result.bad, 0, 'every unit read back through the chain is intact');
    assert.equal(result.units, WRITE_MIB / 16);

    const servedTop = spm.logged('request served').filter((event) => event.volume === top && event.operation === 'Extend');
    assert.ok(spm.logged('request served').some((event) => event.volume === newest && event.operation === 'Extend'), 'the newest top grew');
    // Only the inner commit (which extends the base before it merges) may grow the first base after the first snapshot.
    const servedBaseAfter = spm.logged('request served').filter((event) => event.volume === base && event.operation === 'Extend' && Number(event.resultBytes) > baseSizeAtSnapshot && Number(event.time) < innerCommitStarted);
    assert.ok(servedTop.length > 0, 'the new top grew through the SPM');
    assert.ok(spm.logged('request served').some((event) => event.volume === byHand && event.operation === 'Extend'), 'the layer put on top with plain virsh grew too');
    assert.deepEqual(servedBaseAfter, [], 'the old top did not grow after the snapshot');
    const paused = agent.logged(PAUSED)[0];
    assert.equal(agent.logged(PAUSED).length, 0, `no pause; the agent around the first one:\n${agent.events.filter((event) => paused !== undefined && Math.abs(Number(event.time) - Number(paused.time)) < 5_000).map((event) => JSON.stringify(event)).join('\n')}`);
    const refused = await tideline('volume', 'delete', base, '--socket', socket);
    assert.equal(refused.exitCode, 1);
    assert.match(refused.stderr, /\[volume-has-children\]/);
    process.stdout.write(`      snapshot during a ${WRITE_MIB} MiB write, one with plain virsh, a commit of it, another snapshot and an inner commit: pauses 0; new top ${top} extended ${servedTop.length} times; old top stayed ${baseSizeAtSnapshot / MiB} MiB; data verified through the chain: ${result.bad === 0}\n`);
  });
});
