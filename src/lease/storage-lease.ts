import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { TideError, errorMessage } from '../errors.js';
import { BLOCK_BYTES } from '../mailbox/format.js';
import type { DirectBlockFile } from '../mailbox/direct-io.js';
import { sleep, type Clock } from '../util/clock.js';
import { decodeLeaseBlock, encodeLeaseBlock, LeaseState, type LeaseBlock } from './lease-block.js';
import type { Lease, LeaseEvents } from './types.js';

/**
 * The built-in storage lease, for setups without sanlock: a light-weight lease
 * in the spirit of Chockler & Malkhi, "Light-Weight Leases for Storage-Centric
 * Coordination" (2004). The lease volume has one block per host; a host writes
 * only its own block and reads all of them.
 *
 * Mutual exclusion comes from the blocks being atomic registers: a candidate
 * writes "contending" and then reads every block. Of two candidates, the one
 * whose write completed later reads after the other's write completed, so it
 * sees the other and backs off; at most one finds no rival. A torn block counts
 * as a rival.
 *
 * Timing enters only to tell a dead host from a live one, and every duration is
 * measured on the local monotonic clock (no clock synchronisation is needed;
 * rates must agree within the margin):
 * - a live contender or holder rewrites its block at least every `renewMs`;
 * - a block that did not change for `expiryMs` belongs to a dead host;
 * - the holder stops acting unless a renewal that *started* less than
 *   `expiryMs - marginMs` ago has completed. An observer starts its expiry
 *   count no earlier than that write started, so the holder has always stopped
 *   before anyone may take over;
 * - an I/O that takes longer than `ioTimeoutMs` counts as failed.
 */
export interface LeaseTiming {
  renewMs: number;
  ioTimeoutMs: number;
  expiryMs: number;
  marginMs: number;
}

export const DEFAULT_LEASE_TIMING: LeaseTiming = { renewMs: 1_000, ioTimeoutMs: 2_000, expiryMs: 15_000, marginMs: 4_000 };

export class LeaseTimingError extends TideError {
  readonly code = 'lease-timing';
}

export function validateTiming(timing: LeaseTiming): void {
  if (timing.expiryMs < 4 * timing.renewMs + timing.ioTimeoutMs + timing.marginMs) {
    throw new LeaseTimingError(`lease expiry ${timing.expiryMs} ms must be at least 4 x renew (${timing.renewMs}) + I/O timeout (${timing.ioTimeoutMs}) + margin (${timing.marginMs})`);
  }
  if (timing.marginMs < timing.ioTimeoutMs) throw new LeaseTimingError(`lease margin ${timing.marginMs} ms must cover one I/O timeout (${timing.ioTimeoutMs} ms)`);
}

interface Observation {
  key: string;
  block: LeaseBlock | 'invalid' | undefined;
  changedAt: number;
}

export class StorageLease extends EventEmitter<LeaseEvents> implements Lease {
  private readonly observations = new Map<number, Observation>();
  private observingSince: number | undefined;
  private state = LeaseState.Idle;
  private heartbeat = 0;
  /** Wall clock, for people only (LeaseBlock.holdingSinceMs). */
  private holdingSinceMs = 0;
  private ballot = 0;
  private validUntil = 0;
  private stopped = false;
  private renewing: Promise<void> | undefined;

  constructor(
    private readonly file: DirectBlockFile,
    readonly hostId: number,
    private readonly maxHosts: number,
    private readonly timing: LeaseTiming,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {
    super();
    validateTiming(timing);
    if (!Number.isInteger(hostId) || hostId < 1 || hostId > maxHosts) throw new LeaseTimingError(`host id ${hostId} must be 1..${maxHosts}`);
  }

  get held(): boolean {
    return this.state === LeaseState.Holding && this.clock.now() < this.validUntil;
  }

  /** Resolves once this host holds the lease; rejects if `signal` aborts first. */
  async acquire(signal?: AbortSignal): Promise<void> {
    this.stopped = false;
    for (;;) {
      if (signal?.aborted || this.stopped) throw new LeaseTimingError('lease acquisition was cancelled');
      await this.observe();
      const settled = this.observingSince !== undefined && this.clock.now() - this.observingSince >= this.timing.expiryMs;
      if (!settled || this.rival() !== undefined) {
        await this.writeOwn(this.state); // keep our own block alive while we wait (no-op write when idle)
        await sleep(this.clock, this.timing.renewMs);
        continue;
      }
      this.ballot += 1;
      const contended = await this.writeOwn(LeaseState.Contending);
      if (contended) {
        await this.observe();
        const rival = this.rival();
        if (rival === undefined) {
          const startedAt = this.clock.now();
          if (await this.writeOwn(LeaseState.Holding)) {
            this.validUntil = startedAt + this.timing.expiryMs - this.timing.marginMs;
            this.logger.info({ hostId: this.hostId, ballot: this.ballot }, 'lease acquired');
            this.renewing = this.renewLoop();
            this.emit('acquired');
            return;
          }
        } else {
          this.logger.debug({ hostId: this.hostId, rival }, 'lease contended; backing off');
        }
      }
      await this.writeOwn(LeaseState.Idle);
      // Random back-off breaks the symmetry of two candidates that keep seeing each other.
      await sleep(this.clock, this.timing.renewMs * (1 + Math.random() * 3));
    }
  }

  /** Gives the lease up (writes idle). Also stops an acquisition in progress. */
  async release(): Promise<void> {
    this.stopped = true;
    const wasHolding = this.state === LeaseState.Holding;
    this.state = LeaseState.Idle;
    this.validUntil = 0;
    await this.renewing;
    await this.writeOwn(LeaseState.Idle);
    if (wasHolding) this.logger.info({ hostId: this.hostId }, 'lease released');
  }

  /** Releases the lease and closes the lease volume. */
  async close(): Promise<void> {
    await this.release();
    await this.file.close();
  }

  private async renewLoop(): Promise<void> {
    while (this.state === LeaseState.Holding && !this.stopped) {
      await sleep(this.clock, this.timing.renewMs);
      if (this.state !== LeaseState.Holding || this.stopped) return;
      const startedAt = this.clock.now();
      // A renewal only prolongs a lease that is still valid when it starts. A holder that was stalled
      // (SIGSTOP, a frozen VM) past its validity wakes here with another host possibly holding the lease:
      // it must not write "holding" again and believe it.
      const renewed = startedAt < this.validUntil && (await this.writeOwn(LeaseState.Holding));
      if (renewed && this.state === LeaseState.Holding) this.validUntil = startedAt + this.timing.expiryMs - this.timing.marginMs;
      if (this.clock.now() >= this.validUntil) {
        // `held` is already false (it reads the clock); the block says so too, so no one waits for it to expire.
        this.logger.error({ hostId: this.hostId }, 'lease lost: renewals did not reach the storage in time; stopping SPM work');
        this.emit('lost');
        await this.writeOwn(LeaseState.Idle);
        return;
      }
    }
  }

  /** Another host that is alive and contending or holding, or whose block is torn. */
  private rival(): number | undefined {
    const now = this.clock.now();
    for (const [hostId, observation] of this.observations) {
      if (hostId === this.hostId) continue;
      const alive = now - observation.changedAt < this.timing.expiryMs;
      if (observation.block === 'invalid' && alive) return hostId;
      if (observation.block && observation.block !== 'invalid' && observation.block.state !== LeaseState.Idle && alive) return hostId;
    }
    return undefined;
  }

  private async observe(): Promise<void> {
    const now = this.clock.now();
    let region: Buffer;
    try {
      region = await this.withTimeout(this.file.read(0, this.maxHosts * BLOCK_BYTES), 'read');
    } catch (error) {
      this.logger.warn({ hostId: this.hostId, err: errorMessage(error) }, 'reading the lease volume failed');
      return;
    }
    this.observingSince ??= now;
    for (let hostId = 1; hostId <= this.maxHosts; hostId += 1) {
      const start = (hostId - 1) * BLOCK_BYTES;
      const bytes = region.subarray(start, start + BLOCK_BYTES);
      const block = decodeLeaseBlock(bytes, hostId);
      const key = block === undefined ? 'empty' : block === 'invalid' ? `invalid:${bytes.toString('hex', 0, 64)}` : `${block.state}:${block.heartbeat}:${block.ballot}`;
      const previous = this.observations.get(hostId);
      // First sight counts as a change: a block we have not watched for a whole expiry is presumed alive.
      if (!previous || previous.key !== key) this.observations.set(hostId, { key, block, changedAt: now });
    }
  }

  private async writeOwn(state: LeaseState): Promise<boolean> {
    if (state === LeaseState.Idle && this.state === LeaseState.Idle && this.heartbeat > 0 && !this.stopped) return true;
    this.heartbeat += 1;
    const previous = this.state;
    this.state = state;
    if (state !== LeaseState.Holding) this.holdingSinceMs = 0;
    else if (previous !== LeaseState.Holding) this.holdingSinceMs = Date.now();
    try {
      const block = encodeLeaseBlock({ hostId: this.hostId, state, heartbeat: this.heartbeat, ballot: this.ballot, holdingSinceMs: this.holdingSinceMs });
      await this.withTimeout(this.file.write((this.hostId - 1) * BLOCK_BYTES, block), 'write');
      return true;
    } catch (error) {
      this.logger.warn({ hostId: this.hostId, err: errorMessage(error) }, 'writing the lease block failed');
      if (previous !== LeaseState.Holding) this.state = LeaseState.Idle;
      return false;
    }
  }

  private async withTimeout<T>(work: Promise<T>, what: string): Promise<T> {
    let timer: { cancel(): void } | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = this.clock.setTimeout(() => reject(new LeaseTimingError(`lease ${what} took longer than ${this.timing.ioTimeoutMs} ms`)), this.timing.ioTimeoutMs);
    });
    try {
      return await Promise.race([work, timeout]);
    } finally {
      timer?.cancel();
    }
  }
}
