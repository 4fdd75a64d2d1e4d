import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { detachLoopsUnder, initLoopDomain, LoopPlugin } from '../plugins/loop/index.js';
import { initLeaseVolume, openStorageLease } from '../src/lease/open-storage-lease.js';
import type { StorageLease } from '../src/lease/storage-lease.js';
import { Mailbox } from '../src/mailbox/mailbox.js';
import { MailboxExtender } from '../src/mailbox/mailbox-extender.js';
import { silentLogger } from '../src/log/logger.js';
import { SpmService } from '../src/spm/spm-service.js';
import { systemClock } from '../src/util/clock.js';
import { execaRunner } from '../src/util/runner.js';
import { GiB } from '../src/util/sizes.js';
import type { StoragePlugin } from '../plugins/types.js';
import type { MailboxPolicy } from './policies.js';

/**
 * Short enough that each cluster starts in about 3 s (a candidate watches the
 * lease for one expiry first), long enough that a renewal delayed by a busy
 * machine (a TCG guest on the same cores) does not cost the SPM its lease.
 */
const BENCH_LEASE_TIMING = { renewMs: 100, ioTimeoutMs: 500, expiryMs: 3_000, marginMs: 1_000 };

/** The SPM backs off after a quiet minute; the cold-request figure has its SPM reach that state after 3 s instead. */
export const SHORT_BACK_OFF_AFTER_QUIET_MS = 3_000;

/**
 * A storage domain, mailbox and SPM for benchmarks, with the timings of one
 * policy: real files with direct I/O, a real storage lease, real volume files.
 */
export class BenchCluster {
  private readonly stop = new AbortController();
  private readonly mailboxes: Mailbox[] = [];
  private readonly extenders: MailboxExtender[] = [];

  private constructor(
    readonly dir: string,
    /** The SPM's view of the storage: the cluster's own loop domain unless another was given. */
    readonly plugin: StoragePlugin,
    /** The hosts' view (their refreshes); the same as the SPM's on one machine. */
    private readonly hostPlugin: StoragePlugin,
    readonly policy: MailboxPolicy,
    readonly spm: SpmService,
    private readonly lease: StorageLease,
  ) {}

  private serving: Promise<unknown> = Promise.resolve();

  /** What the SPM has read from the storage so far: through its mailbox handle, and its wake-up thread's own reads. */
  get spmBytesRead(): number {
    return this.mailboxes[0]!.bytesRead + this.spm.wakeUpCounts.bytesRead;
  }

  /**
   * `backOffAfterQuietMs`: when the SPM starts backing off its idle polling (the product's minute unless given).
   * `storage`: other storage than the cluster's loop domain, as the SPM and the hosts see it (real LVM on storage host guests).
   */
  static async start(policy: MailboxPolicy, maxHosts: number, options: { backOffAfterQuietMs?: number; storage?: { spm: StoragePlugin; host: StoragePlugin } } = {}): Promise<BenchCluster> {
    const dir = await mkdtemp('/var/tmp/tideline-bench-');
    await initLoopDomain(path.join(dir, 'domain'), 1024 * GiB);
    const plugin = options.storage?.spm ?? (await LoopPlugin.open(path.join(dir, 'domain'), execaRunner));
    const hostPlugin = options.storage?.host ?? plugin;
    await Mailbox.init(path.join(dir, 'mailbox'), { maxHosts });
    await initLeaseVolume(path.join(dir, 'leases'), maxHosts);
    const lease = await openStorageLease({ path: path.join(dir, 'leases'), hostId: maxHosts, maxHosts, timing: BENCH_LEASE_TIMING, clock: systemClock, logger: silentLogger });
    await lease.acquire();
    const spmMailbox = await Mailbox.open(path.join(dir, 'mailbox'));
    const spm = new SpmService({ mailbox: spmMailbox, plugin, lease, clock: systemClock, logger: silentLogger, run: execaRunner, pollFastMs: policy.spmPollFastMs, pollIdleMs: policy.spmPollIdleMs, pollIdleMaxMs: policy.spmPollIdleMaxMs, backOffAfterQuietMs: options.backOffAfterQuietMs, wakePollMs: policy.spmWakePollMs, wakeUpThread: policy.spmWakePollMs > 0 });
    const cluster = new BenchCluster(dir, plugin, hostPlugin, policy, spm, lease);
    cluster.mailboxes.push(spmMailbox);
    cluster.serving = spm.serve(cluster.stop.signal);
    return cluster;
  }

  get mailboxPath(): string {
    return path.join(this.dir, 'mailbox');
  }

  /** A host's side of the mailbox, with the policy's timings. */
  async host(hostId: number): Promise<MailboxExtender> {
    const mailbox = await Mailbox.open(this.mailboxPath);
    this.mailboxes.push(mailbox);
    const extender = await MailboxExtender.open({ mailbox, hostId, plugin: this.hostPlugin, clock: systemClock, logger: silentLogger, pollMs: this.policy.hostPollMs, resendMs: this.policy.resendMs });
    this.extenders.push(extender);
    return extender;
  }

  async close(): Promise<void> {
    this.stop.abort();
    await this.serving.catch(() => undefined);
    for (const extender of this.extenders) extender.close();
    for (const mailbox of this.mailboxes) await mailbox.close().catch(() => undefined);
    await this.lease.close().catch(() => undefined);
    await detachLoopsUnder(execaRunner, this.dir);
    await rm(this.dir, { recursive: true, force: true });
  }
}
