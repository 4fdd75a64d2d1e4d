import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { detachLoopsUnder, initLoopDomain, LoopPlugin } from '../plugins/loop/index.js';
import { initLeaseVolume, openStorageLease } from '../src/lease/open-storage-lease.js';
import type { LeaseTiming, StorageLease } from '../src/lease/storage-lease.js';
import { Mailbox } from '../src/mailbox/mailbox.js';
import { MailboxExtender } from '../src/mailbox/mailbox-extender.js';
import { DoorbellListener, DoorbellRinger } from '../src/doorbell/doorbell.js';
import { silentLogger } from '../src/log/logger.js';
import { quietLooks, SpmService } from '../src/spm/spm-service.js';
import { systemClock } from '../src/util/clock.js';
import { execaRunner } from '../src/util/runner.js';
import { GiB } from '../src/util/sizes.js';
import type { StoragePlugin } from '../plugins/types.js';
import type { Decoded, Reply, Slot } from '../src/mailbox/format.js';
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
    /** The SPM's doorbell, with the policy's doorbell. */
    private readonly doorbell: DoorbellListener | undefined,
  ) {}

  private serving: Promise<unknown> = Promise.resolve();

  /** What the SPM has read from the storage so far: through its mailbox handle, and its wake-up thread's own reads. */
  get spmBytesRead(): number {
    return this.mailboxes[0]!.bytesRead + this.spm.wakeUpCounts.bytesRead;
  }

  /**
   * `backOffAfterQuietMs`: when the SPM starts backing off its idle polling (the product's minute unless given).
   * `storage`: other storage than the cluster's loop domain, as the SPM and the hosts see it (real LVM on storage host guests).
   * `leaseTiming`: the lease's renewals as a product SPM makes them, where the figure is the SPM's own CPU (the bench's
   * quick lease renews ten times as often as the product's).
   */
  static async start(policy: MailboxPolicy, maxHosts: number, options: { backOffAfterQuietMs?: number; storage?: { spm: StoragePlugin; host: StoragePlugin }; leaseTiming?: LeaseTiming } = {}): Promise<BenchCluster> {
    const dir = await mkdtemp('/var/tmp/tideline-bench-');
    await initLoopDomain(path.join(dir, 'domain'), 1024 * GiB);
    const plugin = options.storage?.spm ?? (await LoopPlugin.open(path.join(dir, 'domain'), execaRunner));
    const hostPlugin = options.storage?.host ?? plugin;
    await Mailbox.init(path.join(dir, 'mailbox'), { maxHosts });
    await initLeaseVolume(path.join(dir, 'leases'), maxHosts);
    const lease = await openStorageLease({ path: path.join(dir, 'leases'), hostId: maxHosts, maxHosts, timing: options.leaseTiming ?? BENCH_LEASE_TIMING, clock: systemClock, logger: silentLogger });
    await lease.acquire();
    const spmMailbox = await Mailbox.open(path.join(dir, 'mailbox'));
    const spm = new SpmService({ mailbox: spmMailbox, plugin, lease, clock: systemClock, logger: silentLogger, run: execaRunner, pollFastMs: policy.spmPollFastMs, pollIdleMs: policy.spmPollIdleMs, pollIdleMaxMs: policy.spmPollIdleMaxMs, backOffAfterQuietMs: options.backOffAfterQuietMs, wakePollMs: policy.spmWakePollMs, wakeUpThread: policy.spmWakePollMs > 0 && quietLooks(policy.doorbell).wakeUpThread });
    const doorbell = policy.doorbell ? await DoorbellListener.listen({ host: '127.0.0.1', port: 0 }, { mailboxId: spmMailbox.header.mailboxId, maxHosts, logger: silentLogger, onRing: (hostId) => spm.ring(hostId) }) : undefined;
    const cluster = new BenchCluster(dir, plugin, hostPlugin, policy, spm, lease, doorbell);
    cluster.mailboxes.push(spmMailbox);
    cluster.serving = spm.serve(cluster.stop.signal);
    return cluster;
  }

  get mailboxPath(): string {
    return path.join(this.dir, 'mailbox');
  }

  private sharedReplies: SharedReplyReader | undefined;

  /**
   * A host's side of the mailbox, with the policy's timings. `sharedReplyReads`:
   * the simulated hosts read their reply slots through one reader (see
   * SharedReplyReader) instead of each its own.
   */
  async host(hostId: number, options: { sharedReplyReads?: boolean } = {}): Promise<MailboxExtender> {
    const opened = await Mailbox.open(this.mailboxPath);
    this.mailboxes.push(opened);
    let mailbox = opened;
    let pollMs = this.policy.hostPollMs;
    if (options.sharedReplyReads) {
      this.sharedReplies ??= new SharedReplyReader(opened, this.policy.hostPollMs, this.stop.signal);
      const shared = this.sharedReplies;
      // The shared reader keeps the host's rhythm; the host asks again as soon as it has an answer.
      mailbox = Object.assign(Object.create(opened) as Mailbox, { readReplies: (id: number) => shared.next(id) });
      pollMs = 1;
    }
    const ringer = this.ringerFor(hostId);
    const extender = await MailboxExtender.open({ mailbox, hostId, plugin: this.hostPlugin, clock: systemClock, logger: silentLogger, pollMs, ...(this.policy.hostEagerPoll ? {} : { eagerPoll: false as const }), resendMs: this.policy.resendMs, ...(ringer ? { doorbell: ringer } : {}) });
    this.extenders.push(extender);
    return extender;
  }

  private readonly ringers: DoorbellRinger[] = [];

  /** What host `hostId` rings after its request, with the policy's doorbell. */
  ringerFor(hostId: number): DoorbellRinger | undefined {
    if (!this.doorbell) return undefined;
    const ringer = new DoorbellRinger([this.doorbell.address], { hostId, mailboxId: this.mailboxes[0]!.header.mailboxId }, silentLogger);
    this.ringers.push(ringer);
    return ringer;
  }

  async close(): Promise<void> {
    this.stop.abort();
    await this.serving.catch(() => undefined);
    for (const extender of this.extenders) extender.close();
    for (const ringer of this.ringers) ringer.close();
    await this.doorbell?.close();
    for (const mailbox of this.mailboxes) await mailbox.close().catch(() => undefined);
    await this.lease.close().catch(() => undefined);
    await detachLoopsUnder(execaRunner, this.dir);
    await rm(this.dir, { recursive: true, force: true });
  }
}

/**
 * Every simulated host's reply slot in one direct read every `intervalMs`,
 * while any host waits. Each real host reads its own slot on its own machine;
 * here 50 hosts reading theirs every 10 ms are 5,000 direct reads a second on
 * the SPM's 2 cores (the whole bench process then used 1.3-1.5 cores), and the
 * figure measured the simulation's load as much as the SPM. A host's read
 * resolves with the first shared read that starts after it asked, so it sees
 * a reply within one interval of its writing, as its own poll would.
 */
class SharedReplyReader {
  private waiting: Array<{ hostId: number; resolve: (slot: Decoded<Slot<Reply>>) => void; reject: (error: Error) => void }> = [];
  private running = false;

  constructor(
    private readonly mailbox: Mailbox,
    private readonly intervalMs: number,
    private readonly stop: AbortSignal,
  ) {}

  next(hostId: number): Promise<Decoded<Slot<Reply>>> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ hostId, resolve, reject });
      if (!this.running) void this.readWhileAsked();
    });
  }

  private async readWhileAsked(): Promise<void> {
    this.running = true;
    while (this.waiting.length > 0 && !this.stop.aborted) {
      await new Promise((resolve) => setTimeout(resolve, this.intervalMs));
      const asked = this.waiting.splice(0);
      try {
        const slots = await this.mailbox.readAllReplies();
        for (const { hostId, resolve } of asked) resolve(slots.get(hostId)!);
      } catch (error) {
        for (const { reject } of asked) reject(error as Error);
      }
    }
    this.running = false;
  }
}
