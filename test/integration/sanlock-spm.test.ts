import assert from 'node:assert/strict';
import { truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { initSanlock, leaveLockspace, SANLOCK_TERM_ENDED_MESSAGE, type SanlockPlacement } from '../../src/lease/sanlock.js';
import { Workspace } from '../../src/lab/workspace.js';
import { Mailbox } from '../../src/mailbox/mailbox.js';
import { MailboxExtender } from '../../src/mailbox/mailbox-extender.js';
import { silentLogger } from '../../src/log/logger.js';
import { systemClock } from '../../src/util/clock.js';
import { execaRunner } from '../../src/util/runner.js';
import { GiB, MiB } from '../../src/util/sizes.js';
import { ensureSanlockDaemon, sanlockHoldersUnder, type SanlockDaemon } from './helpers/sanlock-daemon.js';
import { TidelineProcess } from './helpers/tideline-process.js';
import { until } from './helpers/watch.js';

/**
 * The SPM under a real sanlock lease (the real daemon; see the memlock shim).
 * One sanlock daemon is one host, so both SPM candidates here share host id 1:
 * sanlock still grants the resource to one process at a time.
 */
/**
 * Low enough to keep the test short, high enough for a loaded machine: joining
 * waits two io_timeouts of the other hosts (sanlock assumes its default of 10 s
 * on fresh ids), and a host whose delta lease went unrenewed for eight of its
 * own io_timeouts is thrown out of the lockspace. At 1 or 2 s that window
 * closed during the join itself whenever the test machine was busy.
 */
const SANLOCK_IO_TIMEOUT_SECONDS = 5;
/** How long a serving SPM may stand still before its supervisor kills it (the default is 10 s). */
const STALL_TIMEOUT_SECONDS = 3;

describe('SPM under a real sanlock lease', function () {
  this.timeout(360_000);
  let workspace: Workspace;
  let daemon: SanlockDaemon;
  let placement: SanlockPlacement;
  let mailbox: Mailbox;
  let host: MailboxExtender;
  const spms: TidelineProcess[] = [];

  before(async () => {
    workspace = await Workspace.create({ prefix: 'tideline-sanlock-test-', capacityBytes: 4 * GiB, run: execaRunner });
    daemon = await ensureSanlockDaemon();
    placement = { lockspace: `tl${process.pid}`, hostId: 1, idsPath: path.join(workspace.dir, 'ids'), leasesPath: path.join(workspace.dir, 'leases') };
    for (const file of [placement.idsPath, placement.leasesPath]) {
      await writeFile(file, '');
      await truncate(file, 2 * MiB);
    }
    await initSanlock(execaRunner, placement);
    await Mailbox.init(path.join(workspace.dir, 'mailbox'), { maxHosts: 4 });
    await workspace.plugin.create('vm1-vda', 64 * MiB);
    mailbox = await Mailbox.open(path.join(workspace.dir, 'mailbox'));
    host = await MailboxExtender.open({ mailbox, hostId: 2, plugin: workspace.plugin, clock: systemClock, logger: silentLogger, pollMs: 10, timeoutMs: 60_000 });
  });
  after(async () => {
    host?.close();
    await mailbox?.close();
    // Supervisors first, so that none starts a new holder; then every process whose command line names our workspace.
    for (const spm of spms) spm.child.kill('SIGKILL');
    const { stdout } = await execaRunner('pgrep', ['-f', workspace.dir], { acceptExitCodes: [1] });
    for (const pid of stdout.split('\n').filter(Boolean).map(Number)) if (pid !== process.pid) process.kill(pid, 'SIGKILL');
    for (const spm of spms) await spm.child.catch(() => undefined);
    if (placement) await leaveLockspace(execaRunner, placement).catch(() => undefined);
    await daemon?.stop();
    await workspace?.dispose();
  });

  function spm(name: string): TidelineProcess {
    const process = new TidelineProcess(name, [
      'spm', '--lease-backend', 'sanlock', '--lockspace', placement.lockspace, '--ids', placement.idsPath, '--lease', placement.leasesPath,
      '--host-id', '1', '--mailbox', path.join(workspace.dir, 'mailbox'), '--domain', workspace.domainDir, '--sanlock-io-timeout', String(SANLOCK_IO_TIMEOUT_SECONDS),
      '--stall-timeout', String(STALL_TIMEOUT_SECONDS),
    ]);
    spms.push(process);
    return process;
  }

  /** Registered sanlock clients that this test started (their command line names our workspace). */
  function holders(): Promise<number[]> {
    return sanlockHoldersUnder(workspace.dir);
  }

  it('serves under the lease; one holder at a time; after the holder is killed the lease passes on and serving resumes', async () => {
    const first = spm('spm-a');
    await first.waitFor('acting as SPM', 200_000);
    const second = spm('spm-b');
    await second.waitFor(SANLOCK_TERM_ENDED_MESSAGE, 60_000);
    assert.equal(second.logged('acting as SPM').length, 0, 'a second SPM acted while the first held the lease');
    assert.equal((await holders()).length, 1);

    assert.equal(await host.extend('vm1-vda', 128 * MiB), 128 * MiB);

    const [holder] = await holders();
    process.kill(holder!, 'SIGKILL');
    await until(async () => (first.logged('acting as SPM').length + second.logged('acting as SPM').length) >= 2, 60_000, 'another process to take the lease');
    assert.equal((await holders()).length, 1, 'more than one process holds the SPM lease');
    assert.equal(await host.extend('vm1-vda', 192 * MiB), 192 * MiB);
    assert.equal((await workspace.plugin.describe('vm1-vda')).sizeBytes, 192 * MiB);
  });

  it('joins the lockspace again after sanlock dropped it, and serves again', async () => {
    const supervisors = spms.slice(-2);
    const acting = () => supervisors.reduce((count, supervisor) => count + supervisor.logged('acting as SPM').length, 0);
    const before = acting();
    // What sanlock does when this host's delta lease lapses: the holder is killed, the lockspace is gone.
    await leaveLockspace(execaRunner, placement);
    await until(async () => supervisors.some((supervisor) => supervisor.logged('joined the sanlock lockspace again').length > 0), 120_000, 'a supervisor to join the lockspace again');
    await until(async () => acting() > before, 120_000, 'an SPM to act again under the new lease');
    assert.equal((await holders()).length, 1, 'more than one process holds the SPM lease');
    assert.equal(await host.extend('vm1-vda', 256 * MiB), 256 * MiB);
  });

  it('a holder that is stopped, not dead (SIGSTOP), is killed by its supervisor once its heartbeat stood still, and the lease passes on', async () => {
    const supervisors = spms.slice(-2);
    const acting = () => supervisors.reduce((count, supervisor) => count + supervisor.logged('acting as SPM').length, 0);
    await until(async () => (await holders()).length === 1, 120_000, 'one process to hold the SPM lease');
    const [holder] = await holders();
    const before = acting();
    // sanlock renews this host's delta lease itself: without the watchdog the stopped holder would keep the lease for good.
    process.kill(holder!, 'SIGSTOP');
    const message = 'the SPM process holding the sanlock lease stopped beating (stopped or frozen): killed, so that sanlock frees the lease for another host';
    await until(() => supervisors.some((supervisor) => supervisor.logged(message).length > 0), 60_000, 'the supervisor to kill the stopped holder');
    await until(async () => acting() > before, 120_000, 'another process to take the lease and serve');
    const [next] = await holders();
    assert.ok(next !== undefined && next !== holder, 'the stopped process no longer holds the lease');
    assert.equal(await host.extend('vm1-vda', 320 * MiB), 320 * MiB);
  });
});
