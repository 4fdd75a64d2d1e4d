import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { StoragePlugin } from '../../plugins/types.js';
import { errorMessage } from '../errors.js';
import type { Lease } from '../lease/types.js';
import { decodeRequestSlot, holdsEveryRegion, MESSAGES_PER_SLOT, Operation, REPLY_STATUS_CODES, ReplyStatus, sameNotice, type Decoded, type Reply, type Request, type Slot, type SpmNotice } from '../mailbox/format.js';
import type { Mailbox } from '../mailbox/mailbox.js';
import { sleep, type Clock } from '../util/clock.js';
import type { Runner } from '../util/runner.js';
import { ReplyWriter } from './reply-writer.js';
import { carryOutRequest, refuseIfOpenOnAnyHost } from './request-handlers.js';
import { InProcessWakeUpWatcher, ThreadWakeUpWatcher, type WakeUpWatcher } from './wake-up-watcher.js';
import { fencePlugin, fenceRunner, LeaseLostError } from './fencing.js';

/**
 * The storage pool manager: the only process that changes the storage
 * domain's metadata. While it holds the lease it polls every host's request
 * slot, serves new requests in sequence order, and writes each host's replies.
 * It acts only while `lease.held`, checked before every change and every reply.
 */
export interface SpmOptions {
  mailbox: Mailbox;
  plugin: StoragePlugin;
  lease: Lease;
  clock: Clock;
  logger: Logger;
  /** Runs qemu-img and blkdiscard for volume creation and deletion. */
  run: Runner;
  /** Poll interval while requests flow. */
  pollFastMs?: number;
  /** Poll interval when idle. */
  pollIdleMs?: number;
  /** The longest poll interval, reached by doubling the idle interval after a long quiet spell. */
  pollIdleMaxMs?: number;
  /** How long after the last request polling stays fast. */
  fastForMs?: number;
  /** How long the idle interval holds before the SPM backs off towards pollIdleMaxMs. */
  backOffAfterQuietMs?: number;
  /**
   * Quiet SPM: how often it reads the wake-up block (one 4 KiB block) instead
   * of every slot; 0 turns wake-ups off (every slot at the idle interval, as
   * before the wake-up block existed; the baselines' models).
   */
  wakePollMs?: number;
  /** Quiet SPM with wake-ups: every slot is still read this often, for a host that could not write the wake-up block. */
  fullScanMs?: number;
  /**
   * Read the wake-up block on a thread of its own (src/spm/wake-up-watcher.ts):
   * the SPM daemon does; without it the reads share the event loop and the
   * injected clock, which tests of the state machine need.
   */
  wakeUpThread?: boolean;
  /**
   * What this SPM says about itself in every reply slot it writes (its host
   * id, its doorbell): hosts learn from it where to ring. Slots that already
   * hold replies get it when the term starts, the others with their first.
   */
  notice?: SpmNotice;
  /**
   * Testing: added before every request is carried out, as slow storage
   * would; forces the ENOSPC path, and holds the SPM between its lease check
   * and its change so a test can stall it there.
   */
  requestDelayMs?: number;
}

/**
 * How many hosts' requests one pass carries out at once. Serving is mostly
 * waiting (file system round trips, LVM commands, which LVM itself orders on
 * the VG lock): 50 hosts asking together measured p50 47-65 ms with 8, 32-38
 * ms with 16 (bench figure "mailbox round trip, 50 hosts").
 */
const HOSTS_IN_PARALLEL = 16;

/**
 * A full scan reads every host's request block (one writer per block leaves
 * no cheaper way to see a change): about 1 MiB for 250 hosts, a few
 * milliseconds of I/O and CPU, and load on the SAN. While requests flow the
 * SPM scans every few milliseconds. Once quiet, it reads only the wake-up
 * block (docs/mailbox-format.md) every wakePollMs and scans when a host
 * rewrote it, plus a full scan every fullScanMs. Without wake-ups (an old
 * mailbox, the baselines) it scans every pollIdleMs, and after a quiet minute
 * backs off, doubling the interval up to pollIdleMaxMs.
 */
const BACK_OFF_AFTER_QUIET_MS = 60_000;
const DEFAULT_FAST_FOR_MS = 2_000;
/**
 * A quiet SPM reads the wake-up block every 30 ms: a request is noticed within
 * 15 ms at the median, and the reads cost 133 KiB/s of SAN traffic. The full
 * scan of a 250-host mailbox (1 MiB) every 5 s adds 200 KiB/s: 333 KiB/s in
 * all, below oVirt's ~500 KiB/s. Each read wakes a thread (about 0.02 % of a
 * core here, src/spm/wake-up-watcher.ts): 20 ms cost 2.2 % of a core in all
 * where 30 ms cost 1.7 % (measured here, SPM alone with the bench's lease),
 * and 40 ms put the cold request's median above 30 ms.
 */
export const DEFAULT_WAKE_POLL_MS = 30;
/**
 * With a doorbell listening (src/doorbell) hosts ring the SPM, and its looks
 * at the wake-up block are only the net under a lost ring: once a second, on
 * its event loop, in the wait it makes anyway to check its lease. A request
 * whose ring was lost waits half a second at the median, as every request
 * does with the vdsm-4.5 model; and a quiet SPM makes fewer wake-ups and reads
 * than that model (no thread waking every 30 ms).
 */
export const DOORBELL_WAKE_POLL_MS = 1_000;

/** How a quiet SPM looks at the wake-up block, with or without a doorbell listening. */
export function quietLooks(doorbell: boolean): Required<Pick<SpmOptions, 'wakePollMs' | 'wakeUpThread'>> {
  return doorbell ? { wakePollMs: DOORBELL_WAKE_POLL_MS, wakeUpThread: false } : { wakePollMs: DEFAULT_WAKE_POLL_MS, wakeUpThread: true };
}
export const DEFAULT_FULL_SCAN_MS = 5_000;
/** A quiet SPM waiting for a wake-up still looks at its lease and its stop signal this often. */
const QUIET_WAIT_MS = 1_000;
const WAKE_UP_FAILURES_BEFORE_FALLBACK = 3;
/** One host writing garbage once made an SPM log 2,732 warnings in 73 s. */
export const CORRUPT_SLOT_LOG_INTERVAL_MS = 60_000;
const DEFAULT_POLL_IDLE_MAX_MS = 1_000;
const DEFAULT_POLL_FAST_MS = 5;

async function runWithLimit(tasks: ReadonlyArray<() => Promise<void>>, limit: number): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) await tasks[next++]!();
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
}

export type PollTiming = Pick<SpmOptions, 'pollFastMs' | 'pollIdleMs' | 'pollIdleMaxMs' | 'fastForMs' | 'backOffAfterQuietMs'>;

/** How long to wait before the next poll, `quietMs` after the last request; `backedOffMs` carries the back-off from poll to poll. */
export function spmPollInterval(quietMs: number, backedOffMs: number | undefined, timing: PollTiming): { intervalMs: number; backedOffMs: number | undefined } {
  const { pollFastMs = DEFAULT_POLL_FAST_MS, pollIdleMs = 50, pollIdleMaxMs = DEFAULT_POLL_IDLE_MAX_MS, fastForMs = DEFAULT_FAST_FOR_MS, backOffAfterQuietMs = BACK_OFF_AFTER_QUIET_MS } = timing;
  if (quietMs < fastForMs) return { intervalMs: pollFastMs, backedOffMs: undefined };
  if (quietMs < fastForMs + backOffAfterQuietMs) return { intervalMs: pollIdleMs, backedOffMs: undefined };
  const next = Math.min(Math.max(pollIdleMs, pollIdleMaxMs), (backedOffMs ?? pollIdleMs) * 2);
  return { intervalMs: next, backedOffMs: next };
}

export interface SpmEvents {
  served: [{ hostId: number; sequence: number; operation: string; volume: string; status: string; resultBytes: number; ms: number }];
  'corrupt-slot': [{ hostId: number; reason: string; detail: string }];
  'replies-rewritten': [{ hostId: number; sequences: number[] }];
  'quiet-wake-up': [{ cause: QuietWakeUpCause }];
}

export interface SpmCounters {
  served: number;
  refused: number;
  corruptSlots: number;
  polls: number;
  /** Reply slots written again because their host asked again for what they held. */
  repliesRewritten: number;
  /** What ended each quiet wait with a scan of every slot. */
  quietWakeUps: Record<QuietWakeUpCause, number>;
}

/**
 * What made a quiet SPM scan every slot: a host's doorbell ring, a changed
 * wake-up block, or the slow full scan that finds what both missed. Where
 * doorbells are set up, scans for 'wake-up-block' mean some host's ring did
 * not arrive (a host's first request, before any reply named the SPM; a host
 * of an older tideline; UDP blocked on the way).
 */
export type QuietWakeUpCause = 'doorbell' | 'wake-up-block' | 'full-scan';

export class SpmService extends EventEmitter<SpmEvents> {
  readonly counters: SpmCounters = { served: 0, refused: 0, corruptSlots: 0, polls: 0, repliesRewritten: 0, quietWakeUps: { doorbell: 0, 'wake-up-block': 0, 'full-scan': 0 } };
  private ringsSinceScan = 0;
  private readonly lastServed = new Map<number, number>();
  private readonly replies = new Map<number, Slot<Reply>>();
  /** Per host: when its unreadable slot was last logged, and how many went unlogged since (log flooding). */
  private readonly corruptionLog = new Map<number, { loggedAt: number; unlogged: number }>();
  private lastActivity = Number.NEGATIVE_INFINITY;
  private readonly lastSeen = new Map<number, Buffer>();
  private readonly replyWriter: ReplyWriter;
  /** Made when serving starts (a thread, for the daemon) and closed when it ends. */
  private wakeUps: WakeUpWatcher | undefined;

  /** The domain and the command runner as the SPM may use them: only while the lease holds (fencing.ts). */
  private readonly plugin: StoragePlugin;
  private readonly run: Runner;

  constructor(private readonly options: SpmOptions) {
    super();
    this.plugin = fencePlugin(options.plugin, options.lease);
    this.run = fenceRunner(options.run, options.lease);
    this.replyWriter = new ReplyWriter((slots) => options.mailbox.writeReplyRange(slots), () => options.lease.held);
  }

  /** Serves until `signal` aborts or the lease is lost; resolves with which it was. */
  async serve(signal?: AbortSignal): Promise<'stopped' | 'lease-lost'> {
    const { mailbox, clock } = this.options;
    const wakeUps = this.options.wakeUpThread ? new ThreadWakeUpWatcher(mailbox.path, mailbox.maxHosts) : new InProcessWakeUpWatcher(mailbox, clock);
    this.wakeUps = wakeUps;
    try {
      return await this.serveUntilStopped(wakeUps, signal);
    } finally {
      await wakeUps.close();
    }
  }

  private async serveUntilStopped(wakeUps: WakeUpWatcher, signal?: AbortSignal): Promise<'stopped' | 'lease-lost'> {
    const { lease, clock } = this.options;
    await this.recover();
    // A new SPM (a takeover, a restart) counts as busy: hosts may be waiting for it.
    this.lastActivity = clock.now();
    const fastForMs = this.options.fastForMs ?? DEFAULT_FAST_FOR_MS;
    let lastFullScan = Number.NEGATIVE_INFINITY;
    let useWakeUps = this.wakePollMs > 0;
    let woken = false;
    let wakeUpFailures = 0;
    let waitedQuietly = false;
    while (!signal?.aborted) {
      if (!lease.held) return 'lease-lost';
      const now = clock.now();
      if (!useWakeUps || woken || now - this.lastActivity < fastForMs || now - lastFullScan >= this.fullScanMs) {
        if (waitedQuietly) {
          const cause: QuietWakeUpCause = this.ringsSinceScan > 0 ? 'doorbell' : woken ? 'wake-up-block' : 'full-scan';
          // Rings come from outside: however many arrive, the SPM scans no more often than while requests flow.
          const sinceScanMs = now - lastFullScan;
          if (cause === 'doorbell' && sinceScanMs < this.pollFastMs) await sleep(clock, this.pollFastMs - sinceScanMs);
          this.counters.quietWakeUps[cause] += 1;
          this.emit('quiet-wake-up', { cause });
          waitedQuietly = false;
        }
        woken = false;
        this.ringsSinceScan = 0;
        lastFullScan = clock.now();
        if (await this.pollOnce()) {
          this.lastActivity = clock.now();
          // A pass that served something took a while; hosts that asked meanwhile are already waiting for the next.
          wakeUps.pause();
          continue;
        }
        const quietMs = clock.now() - this.lastActivity;
        if (!useWakeUps || quietMs < fastForMs) {
          wakeUps.pause();
          await sleep(clock, this.nextInterval(quietMs));
          continue;
        }
      }
      // Quiet, with wake-ups: one block read per wake interval; every slot only when a host woke us (the block
      // changed, or it rang the doorbell), or at the slow full scan. The wait ends at least every second so that a
      // lost lease or a stop is noticed.
      const untilFullScanMs = Math.max(0, lastFullScan + this.fullScanMs - clock.now());
      waitedQuietly = true;
      try {
        woken = await wakeUps.waitForChange(this.wakePollMs, Math.min(untilFullScanMs, QUIET_WAIT_MS));
        wakeUpFailures = 0;
      } catch (error) {
        // A failing path fails the full scan too, and the term ends; a wake-up block that stays unreadable while
        // every full scan works is one this mailbox does not have (made by an older tideline).
        wakeUpFailures += 1;
        woken = true;
        if (wakeUpFailures >= WAKE_UP_FAILURES_BEFORE_FALLBACK) {
          useWakeUps = false;
          // A version 1 mailbox may predate the block; a version 2 one has it, so failing reads there are the storage's.
          if (!holdsEveryRegion(this.options.mailbox.header.version)) this.options.logger.warn({ err: errorMessage(error) }, 'no wake-up block in this mailbox; scanning every slot at the idle interval instead');
          else this.options.logger.error({ err: errorMessage(error) }, 'the wake-up block cannot be read; scanning every slot at the idle interval instead');
        }
      }
    }
    return 'stopped';
  }

  /**
   * A host rang the doorbell (src/doorbell): a quiet SPM scans every slot now
   * instead of at its next look at the wake-up block. Only a hint: what is
   * served is what the slots hold.
   */
  ring(hostId: number): void {
    this.ringsSinceScan += 1;
    this.options.logger.debug({ hostId }, 'doorbell rang');
    this.wakeUps?.ring();
  }

  /** Reads of the wake-up block while quiet, and how many found it changed. */
  get wakeUpCounts(): { reads: number; changes: number; bytesRead: number } {
    return { reads: this.wakeUps?.reads ?? 0, changes: this.wakeUps?.changes ?? 0, bytesRead: this.wakeUps?.bytesRead ?? 0 };
  }

  private get pollFastMs(): number {
    return this.options.pollFastMs ?? DEFAULT_POLL_FAST_MS;
  }

  private get wakePollMs(): number {
    return this.options.wakePollMs ?? DEFAULT_WAKE_POLL_MS;
  }

  private get fullScanMs(): number {
    return this.options.fullScanMs ?? DEFAULT_FULL_SCAN_MS;
  }

  private backedOffMs: number | undefined;

  private nextInterval(quietMs: number): number {
    const { intervalMs, backedOffMs } = spmPollInterval(quietMs, this.backedOffMs, this.options);
    this.backedOffMs = backedOffMs;
    return intervalMs;
  }

  /** What an earlier SPM already answered is in the reply slots: continue from there, so nothing is served twice. */
  async recover(): Promise<void> {
    const slots = await this.options.mailbox.readAllReplies();
    const { notice } = this.options;
    for (const [hostId, decoded] of slots) {
      const slot = decoded.kind === 'valid' ? decoded.value : { hostId, generation: 0, messages: new Array<Reply | undefined>(MESSAGES_PER_SLOT).fill(undefined) };
      this.replies.set(hostId, slot);
      this.replyWriter.known(slot);
      this.lastServed.set(hostId, Math.max(0, ...slot.messages.map((reply) => reply?.sequence ?? 0)));
      if (!notice) continue;
      // A host reads its reply slot when it opens the mailbox and after each request: one that was served by an
      // earlier SPM learns this one's doorbell before it next asks. An empty slot gets the notice with its first reply.
      const stale = !sameNotice(slot.spm, notice);
      slot.spm = notice;
      if (stale && slot.messages.some(Boolean)) {
        slot.generation += 1;
        this.replyWriter.queue(slot);
      }
    }
    await this.replyWriter.settled();
  }

  /** One pass over every request slot; true when something was served. */
  async pollOnce(): Promise<boolean> {
    const { mailbox, lease } = this.options;
    this.counters.polls += 1;
    const blocks = await mailbox.readRequestBlocks();
    let servedAny = false;
    // Only slots whose bytes changed since the last poll can hold anything new: most polls decode nothing.
    const changed = blocks.flatMap((block, index) => (this.lastSeen.get(index + 1)?.equals(block) ? [] : [{ hostId: index + 1, block }]));
    const hosts = changed.map(({ hostId, block }) => async () => {
      if (await this.serveHost(hostId, decodeRequestSlot(block, hostId))) {
        servedAny = true;
        // The writer asks the lease before it writes: a former SPM's replies stay unwritten.
        const slot = this.replies.get(hostId)!;
        slot.generation += 1;
        this.replyWriter.queue(slot);
      }
      // Remembered only once fully handled, so a pass cut short by a lost lease is retried by the next term.
      if (lease.held) this.lastSeen.set(hostId, Buffer.from(block));
    });
    // Hosts are independent (each extends its own volumes); a slow LVM command for one must not hold up the rest.
    await runWithLimit(hosts, HOSTS_IN_PARALLEL);
    await this.replyWriter.settled();
    return servedAny;
  }

  /** Serves one host's new requests in sequence order; true when any reply changed. */
  private async serveHost(hostId: number, decoded: Decoded<Slot<Request>>): Promise<boolean> {
    if (decoded.kind === 'empty') return false;
    if (decoded.kind === 'invalid') {
      // Each changed unreadable block counts (unchanged ones are not read again); a host that keeps writing
      // garbage is logged at most once a minute, with how many there were meanwhile.
      this.counters.corruptSlots += 1;
      this.emit('corrupt-slot', { hostId, reason: decoded.reason, detail: decoded.detail });
      const now = this.options.clock.now();
      const logged = this.corruptionLog.get(hostId);
      if (logged && now - logged.loggedAt < CORRUPT_SLOT_LOG_INTERVAL_MS) {
        logged.unlogged += 1;
        return false;
      }
      this.options.logger.warn({ hostId, reason: decoded.reason, detail: decoded.detail, unloggedSinceLast: logged?.unlogged ?? 0 }, 'ignoring an unreadable request slot');
      this.corruptionLog.set(hostId, { loggedAt: now, unlogged: 0 });
      return false;
    }
    const replies = this.replies.get(hostId)!;
    // A host rewrites its slot unchanged but for the generation when an answer is overdue (its resend). If
    // the answer was written, the host could not read it (a storage error, a stalled former SPM's late write
    // over it): write this host's replies again, or it would wait for its request timeout.
    const askedAgain = decoded.value.messages.flatMap((request, index) => (request !== undefined && replies.messages[index]?.sequence === request.sequence ? [request.sequence] : []));
    if (askedAgain.length > 0) {
      this.counters.repliesRewritten += 1;
      this.emit('replies-rewritten', { hostId, sequences: askedAgain });
      this.options.logger.warn({ hostId, sequences: askedAgain }, 'a host asked again for requests already answered; writing its replies again');
    }
    const work = decoded.value.messages
      .map((request, index) => ({ request, index }))
      .filter((entry): entry is { request: Request; index: number } => entry.request !== undefined && replies.messages[entry.index]?.sequence !== entry.request.sequence)
      .sort((left, right) => left.request.sequence - right.request.sequence);
    let changed = false;
    for (const { request, index } of work) {
      if (!this.options.lease.held) break;
      const stale = request.sequence <= (this.lastServed.get(hostId) ?? 0);
      let reply: Reply = { sequence: request.sequence, status: ReplyStatus.StaleSequence, resultBytes: 0 };
      if (!stale) {
        try {
          reply = await this.carryOut(hostId, request);
        } catch (error) {
          if (!(error instanceof LeaseLostError)) throw error;
          this.options.logger.error({ hostId, sequence: request.sequence, operation: Operation[request.operation], volume: request.volume, err: error.message }, 'SPM lease lost in the middle of a request: stopped before its next change; the next SPM answers it');
          break;
        }
      }
      replies.messages[index] = reply;
      if (!stale) this.lastServed.set(hostId, request.sequence);
      changed = true;
    }
    return changed || askedAgain.length > 0;
  }

  private async carryOut(hostId: number, request: Request): Promise<Reply> {
    const { logger, clock } = this.options;
    const started = clock.now();
    if (this.options.requestDelayMs) {
      logger.info({ hostId, sequence: request.sequence, operation: Operation[request.operation], volume: request.volume, delayMs: this.options.requestDelayMs }, 'request delayed (testing)');
      await sleep(clock, this.options.requestDelayMs);
    }
    const { status, resultBytes, detail } = await carryOutRequest(request, {
      hostId,
      plugin: this.plugin,
      run: this.run,
      logger,
      assertUnusedElsewhere: (volume, action) => refuseIfOpenOnAnyHost(this.options.mailbox, volume, action),
    });
    const code = REPLY_STATUS_CODES[status];
    const event = { hostId, sequence: request.sequence, operation: Operation[request.operation] ?? 'unknown', volume: request.volume, status: code, resultBytes, ms: clock.now() - started };
    if (status === ReplyStatus.Ok) {
      this.counters.served += 1;
      logger.info({ ...event, targetBytes: request.targetBytes }, 'request served');
    } else {
      this.counters.refused += 1;
      logger.warn({ ...event, targetBytes: request.targetBytes, detail }, 'request refused');
    }
    this.emit('served', event);
    return { sequence: request.sequence, status, resultBytes };
  }
}
