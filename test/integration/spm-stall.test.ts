import assert from 'node:assert/strict';
import path from 'node:path';
import { initLeaseVolume } from '../../src/lease/open-storage-lease.js';
import { silentLogger } from '../../src/log/logger.js';
import { Mailbox } from '../../src/mailbox/mailbox.js';
import { MailboxExtender } from '../../src/mailbox/mailbox-extender.js';
import { systemClock } from '../../src/util/clock.js';
import { GiB, MiB } from '../../src/util/sizes.js';
import { LabWorld } from './helpers/lab-world.js';
import { TidelineProcess } from './helpers/tideline-process.js';
import { freeLoopbackPort } from './helpers/free-port.js';

/**
 * The dangerous fault: an SPM that is not dead. SPM A (built-in lease) is
 * stopped with SIGSTOP after its lease check, in the middle of a create;
 * B takes over, serves the create, and the volume is deleted again. When A
 * resumes, it must not create the volume a second time, nor write a reply:
 * every change and command of the SPM asks the lease at the last moment.
 */
const LEASE_EXPIRY_SECONDS = 2;
const STALLED = 'SPM lease lost in the middle of a request: stopped before its next change; the next SPM answers it';

describe('a stalled SPM (SIGSTOP past its lease expiry, then SIGCONT)', function () {
  this.timeout(120_000);
  let world: LabWorld;
  let mailbox: Mailbox;
  let host: MailboxExtender | undefined;
  const processes: TidelineProcess[] = [];

  before(async () => {
    world = await LabWorld.create();
    await Mailbox.init(path.join(world.dir, 'mailbox'), { maxHosts: 4 });
    await initLeaseVolume(path.join(world.dir, 'leases'), 4);
    mailbox = await Mailbox.open(path.join(world.dir, 'mailbox'));
  });
  after(async () => {
    host?.close();
    for (const spm of processes) {
      if (spm.pid !== undefined) process.kill(spm.pid, 'SIGCONT');
      await spm.kill().catch(() => undefined);
    }
    await mailbox?.close();
    await world?.dispose();
  });

  function spm(name: string, hostId: number, extra: string[] = []): TidelineProcess {
    const started = new TidelineProcess(name, [
      'spm', '--lease-backend', 'storage', '--mailbox', path.join(world.dir, 'mailbox'), '--lease', path.join(world.dir, 'leases'), '--host-id', String(hostId),
      '--domain', world.workspace.domainDir, '--lease-expiry', String(LEASE_EXPIRY_SECONDS), ...extra,
    ]);
    processes.push(started);
    return started;
  }

  it('does not create, change or answer anything after it resumes: the SPM that took over did all of it', async () => {
    const stalled = spm('spm-a', 1, ['--request-delay', '3000']);
    await stalled.waitFor('acting as SPM', 30_000);
    const metricsPort = await freeLoopbackPort();
    const successor = spm('spm-b', 3, ['--metrics-listen', `127.0.0.1:${metricsPort}`]);
    await successor.waitFor('waiting for the SPM lease', 30_000);
    host = await MailboxExtender.open({ mailbox, hostId: 2, plugin: world.plugin, clock: systemClock, logger: silentLogger, pollMs: 10, resendMs: 1_000, timeoutMs: 60_000 });

    const created = host.create('stall-vda', 64 * MiB, GiB);
    await stalled.waitFor('request delayed (testing)', 30_000);
    process.kill(stalled.pid!, 'SIGSTOP');
    let repliesBeforeResume;
    try {
      assert.equal(await created, 64 * MiB, 'the SPM that took over created the volume');
      assert.equal(successor.logged('acting as SPM').length, 1);
      await host.remove('stall-vda');
      await assert.rejects(world.plugin.describe('stall-vda'), { code: 'volume-not-found' });
      repliesBeforeResume = await mailbox.readReplies(2);
    } finally {
      process.kill(stalled.pid!, 'SIGCONT');
    }
    await stalled.waitFor(STALLED, 30_000);
    // Room for anything it might still do wrong.
    await new Promise((resolve) => setTimeout(resolve, 2 * LEASE_EXPIRY_SECONDS * 1000));

    await assert.rejects(world.plugin.describe('stall-vda'), { code: 'volume-not-found' }, 'the resumed SPM created the deleted volume again');
    assert.deepEqual(stalled.logged('request served'), [], 'the resumed SPM served nothing');
    assert.deepEqual(await mailbox.readReplies(2), repliesBeforeResume, 'the resumed SPM wrote no reply');
    assert.equal(stalled.logged('acting as SPM').length, 1, 'the resumed SPM did not take the lease back from a live SPM');
    await world.plugin.create('after-vda', 32 * MiB, { 'virtual-bytes': String(GiB) });
    assert.equal(await host.extend('after-vda', 64 * MiB), 64 * MiB, 'the cluster still has a working SPM');
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    assert.match(metrics, /^tideline_spm_acting 1$/m, 'the successor says it acts as SPM');
    assert.match(metrics, /^tideline_spm_requests_total\{operation="Create",status="ok"\} 1$/m);
    assert.match(metrics, /^tideline_spm_requests_total\{operation="Delete",status="ok"\} 1$/m);
    process.stdout.write(`      stalled SPM: taken over while stopped; after SIGCONT it changed nothing and wrote no reply\n`);
  });
});

/** A port nothing listens on now (the kernel picks it). */
