import type { Logger } from 'pino';
import type { StoragePlugin } from '../../plugins/types.js';
import { assertVolumeName } from '../../plugins/errors.js';
import { InvalidConfigError, TideError, errorMessage } from '../errors.js';
import { formatEndpoint, type UdpEndpoint } from '../util/address-text.js';
import type { Extender } from '../monitor/ports.js';
import type { Clock, TimerHandle } from '../util/clock.js';
import { carriesParent, MAX_CHILD_AND_PARENT_NAME_BYTES, MESSAGES_PER_SLOT, Operation, REPLY_STATUS_CODES, ReplyStatus, sameNotice, type Request, type Slot, type SpmNotice } from './format.js';
import type { Mailbox } from './mailbox.js';

/** The SPM answered a request with an error; `code` is the reply status (cap-reached, domain-full, ...). */
export class MailboxRequestRefusedError extends TideError {
  constructor(
    readonly code: string,
    readonly volume: string,
    readonly resultBytes: number,
    message: string,
  ) {
    super(message);
  }
}

export class MailboxTimeoutError extends TideError {
  readonly code = 'mailbox-timeout';
}

interface Pending {
  request: Request;
  sentAt: number;
  deadline: number;
  resolve: (resultBytes: number) => void;
  reject: (error: Error) => void;
}

export interface MailboxExtenderOptions {
  mailbox: Mailbox;
  hostId: number;
  /** Refreshes volumes on this host after the SPM extended them. */
  plugin: StoragePlugin;
  clock: Clock;
  logger: Logger;
  /** How often the reply slot is read while requests are outstanding. */
  pollMs?: number;
  /**
   * Right after a request (or a resend) was written, the reply slot is read
   * this often instead, for `forMs`: a quiet SPM answers within a few tens of
   * milliseconds, and a 10 ms poll alone would add 5 ms on average to every
   * extension the guest waits for. A few more 4 KiB reads per request, on
   * this host only. False: always `pollMs` (the benchmark's models).
   */
  eagerPoll?: { intervalMs: number; forMs: number } | false;
  /** Rewrite the request slot when no reply came this long (the write may have been lost). */
  resendMs?: number;
  /** Give up on a request after this long. */
  timeoutMs?: number;
  /**
   * Rung once the slot and the wake-up block are written, so that a quiet SPM
   * looks at once (src/doorbell), with the doorbell the SPM named in this
   * host's reply slot when it last read it.
   */
  doorbell?: { ring(named?: UdpEndpoint): void };
}

/** Reads every 2 ms for the first 50 ms after a request: what the SPM answers in when quiet (bench, cold request). */
export const DEFAULT_EAGER_POLL = { intervalMs: 2, forMs: 50 } as const;

/**
 * The host side of the mailbox: the monitor's Extender. Each request goes into
 * a free message of this host's request slot with a new sequence number; the
 * reply slot is polled only while something is outstanding. Up to
 * MESSAGES_PER_SLOT requests are in flight; more wait in a queue.
 */
export class MailboxExtender implements Extender {
  private readonly inFlight: Array<Pending | undefined> = new Array(MESSAGES_PER_SLOT).fill(undefined);
  private readonly waiting: Array<Omit<Pending, 'request' | 'sentAt' | 'deadline'> & { request: Omit<Request, 'sequence'> }> = [];
  private nextSequence = 1;
  private generation = 0;
  private pollTimer: TimerHandle | undefined;
  private writing: Promise<void> = Promise.resolve();
  private closed = false;
  private readonly pollMs: number;
  private readonly eagerPoll: { intervalMs: number; forMs: number } | false;
  private eagerUntil = 0;
  private readonly resendMs: number;
  private readonly timeoutMs: number;

  private constructor(private readonly options: MailboxExtenderOptions) {
    options.mailbox.assertHostId(options.hostId);
    this.pollMs = options.pollMs ?? 10;
    this.eagerPoll = options.eagerPoll ?? DEFAULT_EAGER_POLL;
    this.resendMs = options.resendMs ?? 3_000;
    this.timeoutMs = options.timeoutMs ?? 50_000;
  }

  /** Continues numbering after whatever this host id sent before (an earlier run, a crash). */
  static async open(options: MailboxExtenderOptions): Promise<MailboxExtender> {
    const extender = new MailboxExtender(options);
    const [requests, replies] = await Promise.all([options.mailbox.readRequests(options.hostId), options.mailbox.readReplies(options.hostId)]);
    let highest = 0;
    for (const decoded of [requests, replies]) {
      if (decoded.kind !== 'valid') continue;
      for (const message of decoded.value.messages) if (message) highest = Math.max(highest, message.sequence);
    }
    if (requests.kind === 'valid') extender.generation = requests.value.generation;
    if (replies.kind === 'valid') extender.learn(replies.value.spm);
    extender.nextSequence = highest + 1;
    return extender;
  }

  extend(volume: string, targetBytes: number): Promise<number> {
    return this.submit({ operation: Operation.Extend, volume, targetBytes, virtualBytes: 0 });
  }

  /** Asks the SPM for a new thin volume with a qcow2 image of `virtualBytes`; resolves with its initial size. */
  create(volume: string, initialBytes: number, virtualBytes: number): Promise<number> {
    return this.submit({ operation: Operation.Create, volume, targetBytes: initialBytes, virtualBytes });
  }

  /** Asks the SPM for a new thin volume whose qcow2 image is backed by `parent` (same virtual size); resolves with its initial size. */
  createChild(volume: string, parent: string, initialBytes: number): Promise<number> {
    return this.submit({ operation: Operation.CreateChild, volume, parent, targetBytes: initialBytes, virtualBytes: 0 });
  }

  /** Asks the SPM to give back what a volume nobody uses does not need beyond `freeTargetBytes`; resolves with its size afterwards. */
  reduce(volume: string, freeTargetBytes: number): Promise<number> {
    return this.submit({ operation: Operation.Reduce, volume, targetBytes: freeTargetBytes, virtualBytes: 0 });
  }

  /** Asks the SPM to record that `volume` is now backed by `parent`. */
  async reparent(volume: string, parent: string): Promise<void> {
    await this.submit({ operation: Operation.Reparent, volume, parent, targetBytes: 0, virtualBytes: 0 });
  }

  /** Asks the SPM to grow a volume's image to `virtualBytes` (or record that it was grown live); resolves with the volume's size. */
  resize(volume: string, virtualBytes: number): Promise<number> {
    return this.submit({ operation: Operation.Resize, volume, targetBytes: 0, virtualBytes });
  }

  /** Asks the SPM to record what the volume's image says now: its backing volume (the parent) and a grown virtual size. */
  async followImage(volume: string): Promise<void> {
    await this.submit({ operation: Operation.FollowImage, volume, targetBytes: 0, virtualBytes: 0 });
  }

  /** Asks the SPM to zero and remove a volume. */
  async remove(volume: string): Promise<void> {
    await this.submit({ operation: Operation.Delete, volume, targetBytes: 0, virtualBytes: 0 });
  }

  refresh(volume: string): Promise<number> {
    return this.options.plugin.refresh(volume);
  }

  submit(request: Omit<Request, 'sequence'>): Promise<number> {
    if (this.closed) return Promise.reject(new MailboxTimeoutError(`mailbox client of host ${this.options.hostId} is closed`));
    // Checked here, not when the slot is encoded: one unencodable message would keep the whole slot from being written.
    try {
      assertVolumeName(request.volume);
      if (carriesParent(request.operation)) {
        assertVolumeName(request.parent ?? '');
        if (request.volume.length + request.parent!.length > MAX_CHILD_AND_PARENT_NAME_BYTES) {
          throw new InvalidConfigError(`volume names ${request.volume} and ${request.parent} together are longer than the ${MAX_CHILD_AND_PARENT_NAME_BYTES} bytes a mailbox message holds; choose a shorter name for the new volume`);
        }
      }
      for (const size of [request.targetBytes, request.virtualBytes]) {
        if (!Number.isSafeInteger(size) || size < 0) throw new InvalidConfigError(`size ${size} for ${request.volume} is not a whole number of bytes`);
      }
    } catch (error) {
      return Promise.reject(error as Error);
    }
    return new Promise<number>((resolve, reject) => {
      this.waiting.push({ request, resolve, reject });
      this.dispatch();
    });
  }

  close(): void {
    this.closed = true;
    this.pollTimer?.cancel();
    const error = new MailboxTimeoutError(`mailbox client of host ${this.options.hostId} closed with the request outstanding`);
    for (const pending of this.inFlight) pending?.reject(error);
    for (const waiting of this.waiting.splice(0)) waiting.reject(error);
    this.inFlight.fill(undefined);
  }

  private dispatch(): void {
    let placed = false;
    for (let index = 0; index < MESSAGES_PER_SLOT && this.waiting.length > 0; index += 1) {
      if (this.inFlight[index]) continue;
      const next = this.waiting.shift()!;
      const now = this.options.clock.now();
      const request: Request = { ...next.request, sequence: this.nextSequence++ };
      this.inFlight[index] = { ...next, request, sentAt: now, deadline: now + this.timeoutMs };
      placed = true;
    }
    if (placed) this.writeSlot(true);
    this.schedulePoll();
  }

  /** `wake`: the slot holds something for the SPM to do (a new request, a resend), so a quiet SPM is woken. */
  private writeSlot(wake: boolean): void {
    this.generation += 1;
    if (wake && this.eagerPoll) {
      this.eagerUntil = this.options.clock.now() + this.eagerPoll.forMs;
      // A read already due at the slower interval is brought forward; the caller schedules the next.
      this.pollTimer?.cancel();
      this.pollTimer = undefined;
    }
    const slot: Slot<Request> = { hostId: this.options.hostId, generation: this.generation, messages: this.inFlight.map((pending) => pending?.request) };
    this.writing = this.writing
      .then(async () => {
        await this.options.mailbox.writeRequests(slot);
        // After the slot: an SPM woken before the slot was written would scan and find nothing.
        if (wake) {
          await this.wakeSpm();
          this.options.doorbell?.ring(this.spm?.doorbell);
        }
      })
      .catch((error: unknown) => this.options.logger.warn({ hostId: this.options.hostId, err: errorMessage(error) }, 'writing the request slot failed; will resend'));
  }

  private wakeUpFailing = false;
  /** What the SPM said about itself in this host's reply slot, last time it was read. */
  private spm: SpmNotice | undefined;

  private learn(notice: SpmNotice | undefined): void {
    if (!notice) return;
    const known = sameNotice(this.spm, notice);
    this.spm = notice;
    if (known) return;
    const doorbell = notice.doorbell ? formatEndpoint(notice.doorbell) : undefined;
    this.options.logger.info({ hostId: this.options.hostId, spmHostId: notice.hostId, ...(doorbell ? { doorbell } : {}) }, doorbell ? "the SPM names its doorbell in this host's reply slot; ringing it after each request" : "the SPM names no doorbell in this host's reply slot");
  }

  /** A failed wake-up costs latency only (the SPM's slow full scan finds the request): said once, not thrown. */
  private async wakeSpm(): Promise<void> {
    try {
      await this.options.mailbox.writeWakeUp(this.options.hostId);
      this.wakeUpFailing = false;
    } catch (error) {
      if (!this.wakeUpFailing) this.options.logger.warn({ hostId: this.options.hostId, err: errorMessage(error) }, 'cannot write the wake-up block; the SPM finds requests at its slower full scans');
      this.wakeUpFailing = true;
    }
  }

  private schedulePoll(): void {
    if (this.pollTimer || this.closed || !this.inFlight.some(Boolean)) return;
    this.pollTimer = this.options.clock.setTimeout(() => {
      this.pollTimer = undefined;
      void this.poll().finally(() => this.schedulePoll());
    }, this.pollInterval());
  }

  private pollInterval(): number {
    return this.eagerPoll && this.options.clock.now() < this.eagerUntil ? Math.min(this.eagerPoll.intervalMs, this.pollMs) : this.pollMs;
  }

  private async poll(): Promise<void> {
    await this.writing;
    let replies;
    try {
      replies = await this.options.mailbox.readReplies(this.options.hostId);
    } catch (error) {
      this.options.logger.warn({ hostId: this.options.hostId, err: errorMessage(error) }, 'reading the reply slot failed');
      return;
    }
    if (replies.kind === 'valid') this.learn(replies.value.spm);
    const now = this.options.clock.now();
    let freed = false;
    let resend = false;
    this.inFlight.forEach((pending, index) => {
      if (!pending) return;
      const reply = replies.kind === 'valid' ? replies.value.messages[index] : undefined;
      if (reply && reply.sequence === pending.request.sequence) {
        this.inFlight[index] = undefined;
        freed = true;
        if (reply.status === ReplyStatus.Ok) pending.resolve(reply.resultBytes);
        else pending.reject(refusal(pending.request, reply.status, reply.resultBytes));
        return;
      }
      // A reply for an older sequence at this index belongs to an earlier request: ignore it.
      if (now >= pending.deadline) {
        this.inFlight[index] = undefined;
        freed = true;
        pending.reject(new MailboxTimeoutError(`no reply from the SPM to request ${pending.request.sequence} (${Operation[pending.request.operation]} ${pending.request.volume}) within ${Math.round(this.timeoutMs / 1000)} s; is 'tideline spm' running and holding the lease?`));
        return;
      }
      if (now - pending.sentAt >= this.resendMs) {
        pending.sentAt = now;
        resend = true;
      }
    });
    if (freed && this.waiting.length > 0) this.dispatch();
    else if (freed || resend) this.writeSlot(resend);
  }
}

function refusal(request: Request, status: ReplyStatus, resultBytes: number): MailboxRequestRefusedError {
  const code = REPLY_STATUS_CODES[status];
  const what =
    request.operation === Operation.Delete ? `delete of ${request.volume}`
    : request.operation === Operation.Reduce ? `reduce of ${request.volume}`
    : request.operation === Operation.Reparent ? `re-parenting of ${request.volume} onto ${request.parent}`
    : request.operation === Operation.Resize ? `resize of ${request.volume}'s image to ${request.virtualBytes} bytes`
    : request.operation === Operation.FollowImage ? `recording what ${request.volume}'s image says (backing volume, virtual size)`
    : request.operation === Operation.CreateChild ? `create of ${request.volume} on ${request.parent}`
    : `${Operation[request.operation].toLowerCase()} of ${request.volume} to ${request.targetBytes} bytes`;
  const reasons: Partial<Record<ReplyStatus, string>> = {
    [ReplyStatus.UnknownVolume]: 'the volume does not exist in the storage domain',
    [ReplyStatus.ShrinkRefused]:
      request.operation === Operation.Resize
        ? `the image is already ${resultBytes} bytes (virtual size), and a virtual size only grows: the guest's data past the new end would be cut off`
        : `the volume is already ${resultBytes} bytes and volumes never shrink`,
    [ReplyStatus.BeyondCap]: `the target is beyond what the volume's qcow2 image can use (volume stays at ${resultBytes} bytes)`,
    [ReplyStatus.DomainFull]: 'the storage domain has no free space left; add space to the VG',
    [ReplyStatus.StaleSequence]: 'the request carries a sequence number the SPM already served (an old or replayed request)',
    [ReplyStatus.InvalidRequest]: 'the SPM could not make sense of the request',
    [ReplyStatus.VolumeExists]: 'a volume of that name already exists',
    [ReplyStatus.Failed]: 'the SPM failed to carry it out; see the SPM log',
    [ReplyStatus.VolumeInUse]:
      resultBytes > 0
        ? `the volume is active on host ${resultBytes} (its inventory says so); stop the VM using it there, or if host ${resultBytes} is down for good run 'tideline mailbox forget-host'`
        : "the volume is active on the SPM host, or a host's inventory could not be read (see the SPM log); stop the VM using it first",
    [ReplyStatus.HasChildren]: 'other volumes are built on it (snapshots or clones of a template); delete or commit them first',
  };
  return new MailboxRequestRefusedError(code, request.volume, resultBytes, `SPM refused ${what}: ${reasons[status] ?? code}`);
}
