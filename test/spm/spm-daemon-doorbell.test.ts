import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { pino } from 'pino';
import { initLoopDomain, LoopPlugin } from '../../plugins/loop/index.js';
import { initLeaseVolume, openStorageLease } from '../../src/lease/open-storage-lease.js';
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
 * `tideline spm` with a doorbell address it cannot bind (another process has
 * the port): it says so as an error and serves anyway, looking at the
 * wake-up block as it does without a doorbell. Real mailbox, lease and loop
 * domain; the host does not ring.
 */
describe('SPM daemon: a doorbell address it cannot listen on', function () {
  this.timeout(30_000);
  let dir: string;

  before(async () => {
    dir = await mkdtemp('/var/tmp/tideline-spm-doorbell-');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('logs the error and serves with its 30 ms looks', async () => {
    await initLoopDomain(path.join(dir, 'domain'), 1024 * MiB);
    const plugin = await LoopPlugin.open(path.join(dir, 'domain'), execaRunner);
    await plugin.create('taken-a', 32 * MiB, { [VIRTUAL_SIZE_TAG]: String(1024 * MiB) });
    await Mailbox.init(path.join(dir, 'mailbox'), { maxHosts: 8 });
    await initLeaseVolume(path.join(dir, 'leases'), 8);
    const spmMailbox = await Mailbox.open(path.join(dir, 'mailbox'));
    const hostMailbox = await Mailbox.open(path.join(dir, 'mailbox'));
    const lease = await openStorageLease({ path: path.join(dir, 'leases'), hostId: 1, maxHosts: 8, timing: { renewMs: 50, ioTimeoutMs: 300, expiryMs: 2_000, marginMs: 500 }, clock: systemClock, logger: silentLogger });
    const squatter = createSocket('udp4');
    await new Promise<void>((resolve) => squatter.bind(0, '127.0.0.1', resolve));
    const log: Array<{ level: number; msg: string; err?: string }> = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void log.push(JSON.parse(line) as { level: number; msg: string }) });
    const stop = new AbortController();
    let service: SpmService | undefined;
    const serving = runSpm({ mailbox: spmMailbox, plugin, lease, clock: systemClock, logger, run: execaRunner, signal: stop.signal, doorbell: { host: '127.0.0.1', port: squatter.address().port }, onService: (started) => (service = started) });
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
    } finally {
      host.close();
      stop.abort();
      await serving;
      squatter.close();
      await spmMailbox.close();
      await hostMailbox.close();
    }
  });
});
