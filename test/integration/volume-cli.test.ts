import assert from 'node:assert/strict';
import path from 'node:path';
import { execa } from 'execa';
import { initLeaseVolume } from '../../src/lease/open-storage-lease.js';
import { makeVersionOneWithoutWakeUpBlock } from '../spm/helpers/spm-world.js';
import { Mailbox } from '../../src/mailbox/mailbox.js';
import { MiB } from '../../src/util/sizes.js';
import { LabWorld } from './helpers/lab-world.js';
import { TidelineProcess } from './helpers/tideline-process.js';
import { until } from './helpers/watch.js';
import { builtCli } from './helpers/built-cli.js';

/** `tideline volume` on a host: create and delete travel CLI -> agent -> mailbox -> SPM; list reads the domain. */
const TIDELINE = [builtCli()];

describe('tideline volume (command line, through agent and SPM)', function () {
  this.timeout(120_000);
  let world: LabWorld;
  const processes: TidelineProcess[] = [];
  let socket: string;

  before(async () => {
    world = await LabWorld.create();
    const mailbox = path.join(world.dir, 'mailbox');
    const leases = path.join(world.dir, 'leases');
    await Mailbox.init(mailbox, { maxHosts: 4 });
    await initLeaseVolume(leases, 4);
    socket = path.join(world.dir, 'agent.sock');
    const spm = new TidelineProcess('spm', ['spm', '--lease-backend', 'storage', '--mailbox', mailbox, '--lease', leases, '--host-id', '1', '--domain', world.workspace.domainDir, '--lease-expiry', '1']);
    const agent = new TidelineProcess('agent', ['agent', '--domain', world.workspace.domainDir, '--mailbox', mailbox, '--host-id', '2', '--status-file', path.join(world.dir, 'status.json'), '--control-socket', socket]);
    processes.push(spm, agent);
    await spm.waitFor('acting as SPM', 30_000);
    await until(async () => (await execa('test', ['-S', socket], { reject: false })).exitCode === 0, 30_000, 'the agent control socket');
  });
  after(async () => {
    for (const process of processes) await process.kill().catch(() => undefined);
    await world.dispose();
  });

  const tideline = (...args: string[]) => execa('node', [...TIDELINE, ...args], { reject: false, timeout: 60_000 });

  it('creates a volume through the SPM, lists it with its virtual size and cap, and deletes it', async () => {
    const created = await tideline('volume', 'create', 'web01-vda', '--size', '64M', '--virtual-size', '2G', '--socket', socket);
    assert.equal(created.exitCode, 0, created.stderr);
    assert.match(created.stdout, /volume web01-vda created: 64\.0 MiB now/);
    const listed = await tideline('volume', 'list', '--domain', world.workspace.domainDir);
    assert.match(listed.stdout, /web01-vda +│ 64\.0 MiB +│ 2\.00 GiB +│ 2\.00 GiB/);
    const spmServed = processes[0]!.logged('request served').map((event) => event.operation);
    assert.deepEqual(spmServed, ['Create']);

    const deleted = await tideline('volume', 'delete', 'web01-vda', '--socket', socket);
    assert.equal(deleted.exitCode, 0, deleted.stderr);
    const json = JSON.parse((await tideline('volume', 'list', '--json', '--domain', world.workspace.domainDir)).stdout) as unknown[];
    assert.deepEqual(json, []);
  });

  it('reports refusals with the SPM code and a non-zero exit, changing nothing', async () => {
    assert.equal((await tideline('volume', 'create', 'db-vda', '--size', '64M', '--virtual-size', '1G', '--socket', socket)).exitCode, 0);
    const again = await tideline('volume', 'create', 'db-vda', '--size', '64M', '--virtual-size', '1G', '--socket', socket);
    assert.equal(again.exitCode, 1);
    assert.match(again.stderr, /a volume of that name already exists \[volume-exists\]/);
    const missing = await tideline('volume', 'delete', 'nosuch', '--socket', socket);
    assert.match(missing.stderr, /\[volume-not-found\]/);
    const badName = await tideline('volume', 'create', '../x', '--size', '64M', '--virtual-size', '1G', '--socket', socket);
    assert.equal(badName.exitCode, 1);
    assert.match(badName.stderr, /invalid-request|invalid-volume-name/);
  });

  it('dumps the mailbox: the requests host 2 sent and the SPM replies, readable and as JSON', async () => {
    const mailboxPath = path.join(world.dir, 'mailbox');
    const text = await tideline('mailbox', 'dump', mailboxPath);
    assert.equal(text.exitCode, 0, text.stderr);
    assert.match(text.stdout, /\(format 2\): 4 hosts, 1 in use/);
    assert.doesNotMatch(text.stdout, /older tideline/);
    assert.match(text.stdout, /host 2\n {2}requests: generation \d+; /);
    assert.match(text.stdout, /replies: {2}generation \d+; \[0\] #\d+ volume-not-found.*; written by the SPM on host 1, no doorbell\n/);
    assert.match(text.stdout, /inventory: heartbeat \d+, \d+ active volumes?/);
    const json = JSON.parse((await tideline('mailbox', 'dump', mailboxPath, '--json')).stdout) as { hosts: Array<{ hostId: number; replies: { kind: string; spm?: unknown } }> };
    assert.deepEqual(json.hosts.map((host) => [host.hostId, host.replies.kind, host.replies.spm]), [[2, 'valid', { hostId: 1 }]]);
    // A mailbox an older tideline made still dumps, with what to do about it.
    const oldPath = path.join(world.dir, 'old-mailbox');
    await Mailbox.init(oldPath, { maxHosts: 4 });
    await makeVersionOneWithoutWakeUpBlock(oldPath);
    const old = await tideline('mailbox', 'dump', oldPath);
    assert.equal(old.exitCode, 0, old.stderr);
    assert.match(old.stdout, /\(format 1\): 4 hosts, 0 in use\n {2}made by an older tideline: .*'tideline mailbox init --force' .* makes it format 2/);
  });

  it("refuses to delete a volume active on a host (the host's inventory lists it), and forget-host refuses a host whose agent still writes", async () => {
    assert.equal((await tideline('volume', 'create', 'busy-vda', '--size', '32M', '--virtual-size', '1G', '--socket', socket)).exitCode, 0);
    await world.plugin.activate('busy-vda');
    const refused = await tideline('volume', 'delete', 'busy-vda', '--socket', socket);
    assert.equal(refused.exitCode, 1);
    assert.match(refused.stderr, /active on host 2 \(its inventory says so\).*\[volume-in-use\]/);
    const alive = await tideline('mailbox', 'forget-host', path.join(world.dir, 'mailbox'), '--host-id', '2', '--watch-seconds', '6');
    assert.equal(alive.exitCode, 1);
    assert.match(alive.stderr, /host 2's agent is still writing its inventory .*\[host-still-writing\]/);
    const nothing = await tideline('mailbox', 'forget-host', path.join(world.dir, 'mailbox'), '--host-id', '3');
    assert.match(nothing.stdout, /host 3 has no inventory: nothing to forget/);
    await world.plugin.deactivate('busy-vda');
    const deleted = await tideline('volume', 'delete', 'busy-vda', '--socket', socket);
    assert.equal(deleted.exitCode, 0, deleted.stderr);
  });

  it('activates a volume for plain QEMU: prints its block device, which `volume path` names too; the SPM then sees it in use; deactivate undoes it', async () => {
    assert.equal((await tideline('volume', 'create', 'plain-vda', '--size', '32M', '--virtual-size', '1G', '--socket', socket)).exitCode, 0);
    const notYet = await tideline('volume', 'path', 'plain-vda', '--domain', world.workspace.domainDir);
    assert.equal(notYet.exitCode, 1);
    assert.match(notYet.stderr, /volume plain-vda is not active on this host; activate it with 'tideline volume activate plain-vda'/);

    const activated = await tideline('volume', 'activate', 'plain-vda', '--socket', socket);
    assert.equal(activated.exitCode, 0, activated.stderr);
    const device = activated.stdout.trim();
    assert.equal((await execa('test', ['-b', device], { reject: false })).exitCode, 0, `${device} is a block device`);
    const info = JSON.parse((await execa('qemu-img', ['info', '-U', '--output=json', device])).stdout) as { format: string; 'virtual-size': number };
    assert.deepEqual([info.format, info['virtual-size']], ['qcow2', 1024 * MiB]);
    const named = JSON.parse((await tideline('volume', 'path', 'plain-vda', '--json', '--domain', world.workspace.domainDir)).stdout) as Record<string, unknown>;
    assert.deepEqual(named, { volume: 'plain-vda', active: true, path: device, visibleBytes: 32 * MiB });

    // The activation published this host's inventory at once: the SPM refuses to delete what a host has active.
    const refused = await tideline('volume', 'delete', 'plain-vda', '--socket', socket);
    assert.equal(refused.exitCode, 1);
    assert.match(refused.stderr, /\[volume-in-use\]/);

    const deactivated = await tideline('volume', 'deactivate', 'plain-vda', '--json', '--socket', socket);
    assert.equal(deactivated.exitCode, 0, deactivated.stderr);
    assert.deepEqual(JSON.parse(deactivated.stdout), { volume: 'plain-vda', active: false, path: null, visibleBytes: null });
    assert.equal((await tideline('volume', 'path', 'plain-vda', '--domain', world.workspace.domainDir)).exitCode, 1);
    const missing = await tideline('volume', 'activate', 'nosuch-vda', '--socket', socket);
    assert.equal(missing.exitCode, 1);
    assert.match(missing.stderr, /\[volume-not-found\]/);
    assert.equal((await tideline('volume', 'delete', 'plain-vda', '--socket', socket)).exitCode, 0);
  });

  it('resizes an image no VM has open through the SPM, records it, and refuses a smaller size or a volume open on a host', async () => {
    assert.equal((await tideline('volume', 'create', 'grow-vda', '--size', '64M', '--virtual-size', '256M', '--socket', socket)).exitCode, 0);
    const grown = await tideline('volume', 'resize', 'grow-vda', '--virtual-size', '1G', '--socket', socket);
    assert.equal(grown.exitCode, 0, grown.stderr);
    assert.match(grown.stdout, /volume grow-vda's image grown to 1\.00 GiB \(no VM had it open\)/);
    const listed = await tideline('volume', 'list', '--domain', world.workspace.domainDir);
    assert.match(listed.stdout, /grow-vda +│ 64\.0 MiB +│ 1\.00 GiB/, 'the recorded virtual size is the new one');
    const device = await world.plugin.activate('grow-vda');
    try {
      const info = JSON.parse((await execa('qemu-img', ['info', '--output=json', '-U', device])).stdout) as { 'virtual-size': number };
      assert.equal(info['virtual-size'], 1024 * MiB, 'the image itself grew');
      // Open on a host (its inventory says so): growing it offline would change a header a running QEMU holds.
      const open = await tideline('volume', 'resize', 'grow-vda', '--virtual-size', '2G', '--socket', socket);
      assert.equal(open.exitCode, 1);
      assert.match(open.stderr, /active on host 2 .*\[volume-in-use\]/);
    } finally {
      await world.plugin.deactivate('grow-vda');
    }
    const smaller = await tideline('volume', 'resize', 'grow-vda', '--virtual-size', '512M', '--socket', socket);
    assert.equal(smaller.exitCode, 1);
    assert.match(smaller.stderr, /a virtual size only grows.*\[shrink-refused\]/);
    const bad = await tideline('volume', 'resize', 'grow-vda', '--virtual-size', 'lots', '--socket', socket);
    assert.equal(bad.exitCode, 2);
    assert.match(bad.stderr, /--virtual-size/);
  });

  it('says so when no agent listens on the control socket', async () => {
    const result = await tideline('volume', 'delete', 'db-vda', '--socket', path.join(world.dir, 'nobody.sock'));
    assert.equal(result.exitCode, 1);
    assert.match(result.stderr, /cannot reach the tideline agent at .*nobody\.sock .*\[agent-unreachable\]/);
  });

  it('templates: two volumes on one template each read it and keep their own writes; the template cannot be deleted while they exist, and is reduced while read, their tops are not', async () => {
    const qemuIo = (device: string, command: string) => execa('qemu-io', ['-f', 'qcow2', '-c', command, device], { reject: false, timeout: 30_000 });
    assert.equal((await tideline('volume', 'create', 'tpl-base', '--size', '64M', '--virtual-size', '1G', '--socket', socket)).exitCode, 0);
    const template = await world.plugin.activate('tpl-base');
    assert.equal((await qemuIo(template, 'write -P 0xaa 0 1M')).exitCode, 0);
    await world.plugin.deactivate('tpl-base');

    const both = await tideline('volume', 'create', 'web-a', '--backing', 'tpl-base', '--size', '32M', '--socket', socket);
    assert.equal(both.exitCode, 0, both.stderr);
    assert.match(both.stdout, /volume web-a created on tpl-base: 32\.0 MiB now/);
    assert.equal((await tideline('volume', 'create', 'web-b', '--backing', 'tpl-base', '--size', '32M', '--socket', socket)).exitCode, 0);
    const withSize = await tideline('volume', 'create', 'web-c', '--backing', 'tpl-base', '--virtual-size', '2G', '--socket', socket);
    assert.match(withSize.stderr, /--virtual-size cannot go with --backing/);
    const noTemplate = await tideline('volume', 'create', 'web-d', '--backing', 'nosuch', '--socket', socket);
    assert.match(noTemplate.stderr, /\[volume-not-found\]/);

    for (const [volume, pattern] of [['web-a', '0xbb'], ['web-b', '0xcc']] as const) {
      const device = await world.plugin.activate(volume);
      assert.equal((await qemuIo(device, `write -P ${pattern} 1M 1M`)).exitCode, 0);
      const template = await qemuIo(device, 'read -P 0xaa 0 1M');
      const own = await qemuIo(device, `read -P ${pattern} 1M 1M`);
      assert.ok(!/Pattern verification failed/.test(template.stdout + own.stdout) && template.exitCode === 0 && own.exitCode === 0, `${volume}: ${template.stdout}${own.stdout}`);
      await world.plugin.deactivate(volume);
    }
    const info = await execa('qemu-img', ['info', '--output=json', path.join(world.workspace.domainDir, 'web-a.img')]);
    assert.equal((JSON.parse(info.stdout) as { 'backing-filename': string })['backing-filename'], path.join(world.workspace.domainDir, 'tpl-base.img'));

    const refused = await tideline('volume', 'delete', 'tpl-base', '--socket', socket);
    assert.equal(refused.exitCode, 1);
    assert.match(refused.stderr, /other volumes are built on it .*\[volume-has-children\]/);
    const listed = (await tideline('volume', 'list', '--domain', world.workspace.domainDir)).stdout;
    assert.match(listed, /tpl-base[\s\S]*└─ web-a[\s\S]*└─ web-b/, listed);

    // As if VMs ran on them: a top in use is never reduced, the template under it is (only read), and still reads back.
    const webA = await world.plugin.activate('web-a');
    await world.plugin.activate('tpl-base');
    const top = await tideline('volume', 'reduce', 'web-a', '--socket', socket);
    assert.equal(top.exitCode, 1);
    assert.match(top.stderr, /top of its chain, which a VM may be writing.*\[volume-in-use\]/);
    const reduced = await tideline('volume', 'reduce', 'tpl-base', '--free-target', '16M', '--socket', socket);
    assert.equal(reduced.exitCode, 0, reduced.stderr);
    assert.ok((await world.plugin.describe('tpl-base')).sizeBytes <= 24 * MiB, reduced.stdout);
    assert.equal(await world.plugin.isActive('tpl-base'), true, 'the template stays active for its readers');
    const readBack = await qemuIo(webA, 'read -P 0xaa 0 1M');
    assert.ok(readBack.exitCode === 0 && !/Pattern verification failed/.test(readBack.stdout), readBack.stdout);
    await world.plugin.deactivate('web-a');
    await world.plugin.deactivate('tpl-base');
    for (const volume of ['web-a', 'web-b', 'tpl-base']) assert.equal((await tideline('volume', 'delete', volume, '--socket', socket)).exitCode, 0, `delete ${volume}`);
  });
});
