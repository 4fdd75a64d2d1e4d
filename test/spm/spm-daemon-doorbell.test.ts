import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { pino } from 'pino';
import { initLoopDomain, LoopPlugin } from '../../plugins/loop/index.js';
import { initLeaseVolume, openStorageLease } from '../../src/lease/open-storage-lease.js';
import { DoorbellRinger } from '../../src/doorbell/doorbell.js';
import { silentLogger } from '../../src/log/logger.js';
import { Mailbox } from '../../src/mailbox/mailbox.js';
import { MailboxExtender } from '../../src/mailbox/mailbox-extender.js';
import { runSpm } from '../../src/spm/spm-daemon.js';
import type { SpmService } from '../../src/spm/spm-service.js';
import { VIRTUAL_SIZE_TAG } from '../../src/spm/validate.js';
import { systemClock } from '../../src/util/clock.js';
import { execaRunner } from '../../src/util/runner.js';
import { MiB } from '../../src/util/sizes.js';

/**
 * `tideline spm` and its doorbell with a real mailbox, lease and loop domain,
 * over loopback UDP.
 */
/** A loop domain with one thin volume, a mailbox (opened by the SPM and by host 2) and the built-in lease, under `base`. */
async function spmWorld(base: string, volume: string) {
  await initLoopDomain(path.join(base, 'domain'), 1024 * MiB);
  const plugin = await LoopPlugin.open(path.join(base, 'domain'), execaRunner);
  await plugin.create(volume, 32 * MiB, { [VIRTUAL_SIZE_TAG]: String(1024 * MiB) });
  await Mailbox.init(path.join(base, 'mailbox'), { maxHosts: 8 });
  await initLeaseVolume(path.join(base, 'leases'), 8);
  const spmMailbox = await Mailbox.open(path.join(base, 'mailbox'));
  const hostMailbox = await Mailbox.open(path.join(base, 'mailbox'));
  const leaseFor = () => openStorageLease({ path: path.join(base, 'leases'), hostId: 1, maxHosts: 8, timing: { renewMs: 50, ioTimeoutMs: 300, expiryMs: 2_000, marginMs: 500 }, clock: systemClock, logger: silentLogger });
  return { plugin, spmMailbox, hostMailbox, leaseFor };
}

describe('SPM daemon and its doorbell', function () {
  this.timeout(30_000);
  let dir: string;

  before(async () => {
    dir = await mkdtemp('/var/tmp/tideline-spm-doorbell-');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  // An address it cannot bind (another process has the port): it says so as an error and serves anyway, looking at
  // the wake-up block as it does without a doorbell; the host does not ring.
  it('a doorbell address it cannot listen on: logs the error and serves with its 30 ms looks', async () => {
    const { plugin, spmMailbox, hostMailbox, leaseFor } = await spmWorld(path.join(dir, 'taken'), 'taken-a');
    const lease = await leaseFor();
    const squatter = createSocket('udp4');
    await new Promise<void>((resolve) => squatter.bind(0, '127.0.0.1', resolve));
    const log: Array<{ level: number; msg: string; err?: string }> = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void log.push(JSON.parse(line) as { level: number; msg: string }) });
    const stop = new AbortController();
    let service: SpmService | undefined;
    const serving = runSpm({ mailbox: spmMailbox, plugin, lease, hostId: 1, clock: systemClock, logger, run: execaRunner, signal: stop.signal, doorbell: { host: '127.0.0.1', port: squatter.address().port }, onService: (started) => (service = started) });
    const host = await MailboxExtender.open({ mailbox: hostMailbox, hostId: 2, plugin, clock: systemClock, logger: silentLogger, pollMs: 5 });
    try {
      while (!service) await new Promise((resolve) => setTimeout(resolve, 10));
      const refused = log.find((line) => line.msg.startsWith('no doorbell this term'));
      assert.ok(refused, `no error about the doorbell: ${JSON.stringify(log)}`);
      assert.equal(refused.level, 50);
      assert.match(refused.err ?? '', new RegExp(`127\\.0\\.0\\.1:${squatter.address().port}: EADDRINUSE`));
      // Busy for its first 2 s (a new term), then quiet: a second and a half of 30 ms looks is about 50.
      await new Promise((resolve) => setTimeout(resolve, 3_500));
      assert.ok(service.wakeUpCounts.reads > 20, `only ${service.wakeUpCounts.reads} looks: not the 30 ms looks`);
      assert.equal(await host.extend('taken-a', 64 * MiB), 64 * MiB);
      const replies = await hostMailbox.readReplies(2);
      assert.deepEqual(replies.kind === 'valid' ? replies.value.spm : replies, { hostId: 1 }, 'the SPM names itself, and no doorbell it does not have');
    } finally {
      host.close();
      stop.abort();
      await serving;
      squatter.close();
      await spmMailbox.close();
      await hostMailbox.close();
    }
  });

  it('names its doorbell in the reply slots: a host with no spm-doorbells learns it from its first reply and rings a quiet SPM; the next term names its own', async () => {
    const { plugin, spmMailbox, hostMailbox, leaseFor } = await spmWorld(path.join(dir, 'learned'), 'learn-a');
    const term = async () => {
      const stop = new AbortController();
      let service: SpmService | undefined;
      const serving = runSpm({ mailbox: spmMailbox, plugin, lease: await leaseFor(), hostId: 1, clock: systemClock, logger: silentLogger, run: execaRunner, signal: stop.signal, doorbell: { host: '127.0.0.1', port: 0 }, onService: (started) => (service = started) });
      while (!service) await new Promise((resolve) => setTimeout(resolve, 10));
      return { service, end: async () => (stop.abort(), await serving) };
    };
    const ringer = new DoorbellRinger([], { hostId: 2, mailboxId: hostMailbox.header.mailboxId }, silentLogger);
    let first = await term();
    const host = await MailboxExtender.open({ mailbox: hostMailbox, hostId: 2, plugin, clock: systemClock, logger: silentLogger, doorbell: ringer });
    try {
      // Nothing learned yet: the first request rings nobody (the new term's SPM is busy and scanning anyway).
      assert.equal(await host.extend('learn-a', 40 * MiB), 40 * MiB);
      assert.equal(ringer.sent, 0);
      const named = await hostMailbox.readReplies(2);
      assert.ok(named.kind === 'valid' && named.value.spm?.hostId === 1 && named.value.spm.doorbell?.address === '127.0.0.1' && named.value.spm.doorbell.port > 0, `no doorbell named: ${JSON.stringify(named)}`);
      // Quiet (past 2 s), the SPM looks at the wake-up block once a second: a ring makes it scan at once.
      await new Promise((resolve) => setTimeout(resolve, 2_500));
      const started = performance.now();
      assert.equal(await host.extend('learn-a', 48 * MiB), 48 * MiB);
      const tookMs = performance.now() - started;
      assert.equal(ringer.sent, 1);
      assert.equal(first.service.counters.quietWakeUps.doorbell, 1, `woken by ${JSON.stringify(first.service.counters.quietWakeUps)} after ${Math.round(tookMs)} ms`);
      const firstDoorbell = named.value.spm.doorbell;
      const answered = await hostMailbox.readReplies(2);
      await first.end();
      // The next term listens on another port and rewrites the slot that holds replies at once, before any request.
      first = await term();
      const deadline = Date.now() + 5_000;
      let renamed = await hostMailbox.readReplies(2);
      while (renamed.kind === 'valid' && renamed.value.spm?.doorbell?.port === firstDoorbell.port && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        renamed = await hostMailbox.readReplies(2);
      }
      assert.ok(renamed.kind === 'valid' && renamed.value.spm?.doorbell && renamed.value.spm.doorbell.port !== firstDoorbell.port, `the new term did not name its doorbell: ${JSON.stringify(renamed)}`);
      assert.deepEqual(renamed.value.messages, answered.kind === 'valid' ? answered.value.messages : answered, 'the replies stay as they were');
    } finally {
      host.close();
      ringer.close();
      await first.end();
      await spmMailbox.close();
      await hostMailbox.close();
    }
  });
});
