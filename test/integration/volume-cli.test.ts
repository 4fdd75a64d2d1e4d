import assert from 'node:assert/strict';
import path from 'node:path';
import { execa } from 'execa';
import { initLeaseVolume } from '../../src/lease/open-storage-lease.js';
import { Mailbox } from '../../src/mailbox/mailbox.js';
import { LabWorld } from './helpers/lab-world.js';
import { TidelineProcess } from './helpers/tideline-process.js';
import { until } from './helpers/watch.js';

/** `tideline volume` on a host: create and delete travel CLI -> agent -> mailbox -> SPM; list reads the domain. */
const TIDELINE = ['--import', 'tsx', 'src/cli/main.ts'];

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
    const spm = new TidelineProcess('spm', ['spm', '--mailbox', mailbox, '--lease', leases, '--host-id', '1', '--domain', world.workspace.domainDir, '--lease-expiry', '1']);
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
    assert.match(text.stdout, /4 hosts, 1 in use/);
    assert.match(text.stdout, /host 2\n {2}requests: generation \d+; /);
    assert.match(text.stdout, /replies: {2}generation \d+; \[0\] #\d+ volume-not-found/);
    const json = JSON.parse((await tideline('mailbox', 'dump', mailboxPath, '--json')).stdout) as { hosts: Array<{ hostId: number; replies: { kind: string } }> };
    assert.deepEqual(json.hosts.map((host) => [host.hostId, host.replies.kind]), [[2, 'valid']]);
  });

  it('says so when no agent listens on the control socket', async () => {
    const result = await tideline('volume', 'delete', 'db-vda', '--socket', path.join(world.dir, 'nobody.sock'));
    assert.equal(result.exitCode, 1);
    assert.match(result.stderr, /cannot reach the tideline agent at .*nobody\.sock .*\[agent-unreachable\]/);
  });
});
