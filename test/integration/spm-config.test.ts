import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { initLeaseVolume } from '../../src/lease/open-storage-lease.js';
import { Mailbox } from '../../src/mailbox/mailbox.js';
import { LabWorld } from './helpers/lab-world.js';
import { TidelineProcess } from './helpers/tideline-process.js';

/** `tideline spm` reads the host configuration the agent reads: the host id and the mailbox are written once. */
describe('tideline spm takes its settings from tideline.conf, flags winning', function () {
  this.timeout(60_000);
  let world: LabWorld;
  const processes: TidelineProcess[] = [];
  let mailbox: string;
  let leases: string;

  before(async () => {
    world = await LabWorld.create();
    mailbox = path.join(world.dir, 'mailbox');
    leases = path.join(world.dir, 'leases');
    await Mailbox.init(mailbox, { maxHosts: 4 });
    await initLeaseVolume(leases, 4);
  });
  after(async () => {
    for (const process of processes) await process.kill().catch(() => undefined);
    await world.dispose();
  });

  async function config(lines: string[]): Promise<string> {
    const file = path.join(world.dir, `tideline-${processes.length}.conf`);
    await writeFile(file, `${lines.join('\n')}\n`);
    return file;
  }

  function spm(args: string[]): TidelineProcess {
    const process = new TidelineProcess(`spm${processes.length}`, ['spm', ...args]);
    processes.push(process);
    return process;
  }

  it('serves with nothing on its command line but the file', async () => {
    const file = await config([`loop-domain = ${world.workspace.domainDir}`, `mailbox = ${mailbox}`, 'host-id = 3', `lease = ${leases}`, 'lease-backend = storage', 'lease-expiry = 1']);
    const serving = spm(['--config', file]);
    await serving.waitFor('acting as SPM', 30_000);
    assert.equal(serving.logged('acting as SPM')[0]!.hostId, 3);
    await serving.kill('SIGTERM');
  });

  it('takes a flag over the file', async () => {
    const file = await config([`loop-domain = ${world.workspace.domainDir}`, `mailbox = ${mailbox}`, 'host-id = 3', `lease = ${leases}`, 'lease-backend = storage', 'lease-expiry = 1']);
    const serving = spm(['--config', file, '--host-id', '2']);
    await serving.waitFor('acting as SPM', 30_000);
    assert.equal(serving.logged('acting as SPM')[0]!.hostId, 2);
    await serving.kill('SIGTERM');
  });

  it('names what is missing and where to set it, and a bad value with its line', async () => {
    const file = await config([`loop-domain = ${world.workspace.domainDir}`, 'host-id = 3', `lease = ${leases}`, 'lease-backend = storage']);
    const missing = spm(['--config', file]);
    const result = await missing.child;
    assert.notEqual(result.exitCode, 0);
    assert.match(String(result.stderr), new RegExp(`the SPM needs the mailbox volume: give --mailbox, or set 'mailbox' in ${file.replace(/[.]/g, '\\.')}`));
    const bad = await config([`mailbox = ${mailbox}`, 'lease-backend = paxos']);
    const refused = await spm(['--config', bad]).child;
    assert.notEqual(refused.exitCode, 0);
    assert.match(String(refused.stderr), /tideline-\d\.conf:2: lease-backend must be 'sanlock' or 'storage'/);
  });
});
