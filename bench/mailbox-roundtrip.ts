import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { initLoopDomain, LoopPlugin } from '../plugins/loop/index.js';
import { initLeaseVolume, openStorageLease } from '../src/lease/open-storage-lease.js';
import { Mailbox } from '../src/mailbox/mailbox.js';
import { MailboxExtender } from '../src/mailbox/mailbox-extender.js';
import { silentLogger } from '../src/log/logger.js';
import { SpmService } from '../src/spm/spm-service.js';
import { systemClock } from '../src/util/clock.js';
import { execaRunner } from '../src/util/runner.js';
import { GiB, MiB } from '../src/util/sizes.js';
import type { MailboxPolicy } from './policies.js';
import { summarize, type Summary } from './stats.js';

/**
 * Request -> reply round trip through a real mailbox file (direct I/O), a real
 * SPM under a real storage lease, extending real volume files: `hosts`
 * simulated hosts, each extending its own volume `requestsPerHost` times in a
 * row, all hosts at once.
 */
export async function mailboxRoundTrip(policy: MailboxPolicy, hosts: number, requestsPerHost: number): Promise<Summary> {
  const dir = await mkdtemp('/var/tmp/tideline-bench-');
  const stop = new AbortController();
  const mailboxes: Mailbox[] = [];
  const extenders: MailboxExtender[] = [];
  try {
    await initLoopDomain(path.join(dir, 'domain'), 64 * GiB);
    const plugin = await LoopPlugin.open(path.join(dir, 'domain'), execaRunner);
    const maxHosts = Math.max(hosts + 1, 8);
    await Mailbox.init(path.join(dir, 'mailbox'), { maxHosts });
    await initLeaseVolume(path.join(dir, 'leases'), maxHosts);
    const lease = await openStorageLease({ path: path.join(dir, 'leases'), hostId: maxHosts, maxHosts, timing: { renewMs: 50, ioTimeoutMs: 200, expiryMs: 600, marginMs: 200 }, clock: systemClock, logger: silentLogger });
    await lease.acquire();
    const spmMailbox = await Mailbox.open(path.join(dir, 'mailbox'));
    mailboxes.push(spmMailbox);
    const spm = new SpmService({ mailbox: spmMailbox, plugin, lease, clock: systemClock, logger: silentLogger, run: execaRunner, pollFastMs: policy.spmPollFastMs, pollIdleMs: policy.spmPollIdleMs });
    const serving = spm.serve(stop.signal);

    const samples: number[] = [];
    await Promise.all(
      Array.from({ length: hosts }, async (_, index) => {
        const hostId = index + 1;
        const volume = `bench${hostId}-vda`;
        await plugin.create(volume, 8 * MiB);
        const mailbox = await Mailbox.open(path.join(dir, 'mailbox'));
        mailboxes.push(mailbox);
        const extender = await MailboxExtender.open({ mailbox, hostId, plugin, clock: systemClock, logger: silentLogger, pollMs: policy.hostPollMs, resendMs: policy.resendMs });
        extenders.push(extender);
        // Hosts start at random moments, as VMs would, not in lockstep with the SPM's poll.
        await new Promise((resolve) => setTimeout(resolve, Math.random() * policy.spmPollIdleMs));
        for (let request = 1; request <= requestsPerHost; request += 1) {
          const started = performance.now();
          await extender.extend(volume, (8 + request) * MiB);
          samples.push(performance.now() - started);
          await new Promise((resolve) => setTimeout(resolve, Math.random() * 20));
        }
      }),
    );
    stop.abort();
    await serving;
    await lease.close();
    return summarize(samples);
  } finally {
    stop.abort();
    for (const extender of extenders) extender.close();
    for (const mailbox of mailboxes) await mailbox.close().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}
