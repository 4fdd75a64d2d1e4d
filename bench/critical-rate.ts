import type { MailboxPolicy } from './policies.js';
import { realGuestRun, type GuestOutcome, type GuestRunOptions } from './real-guest.js';

/**
 * Figure 3: the guest write rate at which a policy first pauses. A real TCG
 * guest writes with its disk throttled by QEMU (bps_wr) at rising rates; the
 * first rate with a pause is the policy's critical rate for that chunk. The
 * last rung is unthrottled: a policy that does not pause there has a critical
 * rate above what this machine's guest can write, and the table says so
 * instead of inventing a number.
 */
export interface RateRung {
  throttleMibPerSecond: number | undefined;
  outcome: GuestOutcome;
}

export interface CriticalRate {
  rungs: RateRung[];
  /** The first throttle with a pause; undefined when none paused (the unthrottled rung included). */
  criticalMibPerSecond: number | undefined;
  /** What the guest reached on the fastest rung it ran. */
  fastestMibPerSecond: number;
}

/** Enough written per rung to cross several thresholds, and at least this many seconds of writing. */
const SECONDS_PER_RUNG = 6;

export async function criticalWriteRate(policy: MailboxPolicy, chunkBytes: number, ratesMibPerSecond: number[], minimumWriteMib: number, options: Pick<GuestRunOptions, 'adaptive'> = {}): Promise<CriticalRate> {
  const rungs: RateRung[] = [];
  for (const rate of [...ratesMibPerSecond, undefined]) {
    const writeMib = Math.max(minimumWriteMib, Math.ceil(((rate ?? 64) * SECONDS_PER_RUNG) / 16) * 16);
    const outcome = await realGuestRun(policy, chunkBytes, writeMib, { ...options, ...(rate ? { throttleMibPerSecond: rate } : {}) });
    if (!outcome.verified) throw new Error(`${policy.name}: the guest's data did not verify at ${rate ?? 'full'} MiB/s`);
    rungs.push({ throttleMibPerSecond: rate, outcome });
    if (outcome.pauses > 0) break;
  }
  const paused = rungs.find((rung) => rung.outcome.pauses > 0);
  return {
    rungs,
    // Throttled rungs sit far below the guest's full speed, so the throttle is the rate it wrote at.
    criticalMibPerSecond: paused ? (paused.throttleMibPerSecond ?? paused.outcome.writeMibPerSecond) : undefined,
    fastestMibPerSecond: Math.max(...rungs.map((rung) => rung.outcome.writeMibPerSecond)),
  };
}
