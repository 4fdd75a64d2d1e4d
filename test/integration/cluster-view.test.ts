import assert from 'node:assert/strict';
import { access } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import type { ClusterView } from '../../src/cluster/cluster-view.js';
import { ClusterWorld } from './helpers/cluster-world.js';
import { until } from './helpers/watch.js';
import { builtCli } from './helpers/built-cli.js';

/**
 * `tideline cluster` on a running cluster (two SPM candidates, one agent
 * host): it reads only the shared storage, from any host, with no daemon.
 */
describe('tideline cluster: the cluster as the shared storage shows it', function () {
  this.timeout(120_000);
  let cluster: ClusterWorld;

  before(async () => {
    cluster = await ClusterWorld.create(4);
  });
  after(async () => {
    await cluster?.dispose();
  });

  const tideline = (...args: string[]) => execa('node', [builtCli(), ...args], { reject: false, timeout: 60_000 });
  const view = async () => {
    const result = await tideline('cluster', '--mailbox', cluster.mailboxPath, '--lease', cluster.leasePath, '--lease-backend', 'storage', '--observe', '6', '--json');
    assert.equal(result.exitCode, 0, result.stderr);
    return JSON.parse(result.stdout) as ClusterView;
  };

  it('names the SPM and since when, every host and whether it lives, what a host asked and what was refused; a stopped agent turns silent', async () => {
    const spm = cluster.spm(1, '2');
    await spm.waitFor('acting as SPM', 30_000);
    const standby = cluster.spm(3, '2');
    await standby.waitFor('waiting for the SPM lease', 30_000);
    const agent = cluster.start('agent2', [
      'agent', '--domain', cluster.lab.workspace.domainDir, '--mailbox', cluster.mailboxPath, '--host-id', '2',
      '--status-file', path.join(cluster.dir, 'status.json'), '--control-socket', path.join(cluster.dir, 'agent.sock'),
    ]);
    await until(() => access(path.join(cluster.dir, 'agent.sock')).then(() => true, () => false), 30_000, 'the agent control socket');
    // A request the SPM refuses, so the view has something to show.
    const refused = await tideline('volume', 'delete', 'nosuch-vda', '--socket', path.join(cluster.dir, 'agent.sock'));
    assert.equal(refused.exitCode, 1);

    const running = await view();
    // Host 1 is the SPM unless a loaded machine kept it from renewing within the 2 s expiry: then host 3 took over, as
    // it should. The view must name whichever holds the lease, as the candidates' own logs do.
    const holderId = running.spm?.hostId;
    assert.ok(holderId === 1 || holderId === 3, JSON.stringify(running.spm));
    const holder = holderId === 1 ? spm : standby;
    assert.ok(holder.logged('acting as SPM').length > 0, `host ${holderId} said it acts as SPM`);
    assert.equal(running.spm?.serving, true);
    assert.ok(running.spm?.sinceMs && Math.abs(running.spm.sinceMs - Date.now()) < 120_000, `holding since ${running.spm?.sinceMs}`);
    const byId = new Map(running.hosts.map((host) => [host.hostId, host]));
    assert.deepEqual([...byId.keys()], [1, 2, 3]);
    assert.equal(byId.get(holderId)!.spmCandidate, 'alive');
    // A standby candidate writes its lease block only while it contends: its agent's inventory is what shows it alive.
    if (holderId === 1) assert.equal(byId.get(3)!.spmCandidate, 'silent');
    assert.equal(byId.get(2)!.agent, 'alive', agent.transcript());
    assert.deepEqual(byId.get(2)!.lastRefused?.code, 'volume-not-found');
    assert.deepEqual(byId.get(2)!.pending, []);

    const text = await tideline('cluster', '--mailbox', cluster.mailboxPath, '--lease', cluster.leasePath, '--lease-backend', 'storage', '--observe', '2');
    assert.equal(text.exitCode, 0, text.stderr);
    assert.match(text.stdout, /^SPM: host [13], since .* renewing its lease/);
    assert.match(text.stdout, /volume-not-found/);
    assert.match(text.stderr, /watching the shared storage for 2 s/);

    await agent.kill('SIGKILL');
    holder.child.kill('SIGSTOP');
    const after = await view();
    const agentHost = after.hosts.find((host) => host.hostId === 2)!;
    assert.equal(agentHost.agent, 'silent');
    assert.equal(agentHost.alive, false);
    // The stopped SPM still holds the lease on the storage, but no longer renews it (or the other candidate took it).
    assert.ok(after.spm === null || after.spm.hostId !== holderId || after.spm.serving === false, JSON.stringify(after.spm));
    holder.child.kill('SIGCONT');
  });

  it('says what is missing without a mailbox', async () => {
    const result = await tideline('cluster', '--config', path.join(cluster.dir, 'no-such.conf'));
    assert.equal(result.exitCode, 2);
    assert.match(result.stderr, /name the mailbox volume: --mailbox PATH, or 'mailbox' in/);
  });
});
