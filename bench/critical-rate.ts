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

/**
 * Runs rungs at rising rates until the first pause (or through all of them),
 * refusing a rung whose data did not read back; `rateOf` says at what rate the
 * paused rung really wrote.
 */
export async function climbLadder<Rate extends number | undefined>(
  rates: readonly Rate[],
  runRung: (rate: Rate) => Promise<RateRung>,
  options: { throughAllRates?: boolean; describe: string; rateOf: (rung: RateRung) => number },
): Promise<CriticalRate> {
  const rungs: RateRung[] = [];
  for (const rate of rates) {
    const rung = await runRung(rate);
    if (!rung.outcome.verified) throw new Error(`${options.describe}: the data did not read back at ${rate ?? 'full'} MiB/s`);
    rungs.push(rung);
    if (rung.outcome.pauses > 0 && !options.throughAllRates) break;
  }
  const paused = rungs.find((rung) => rung.outcome.pauses > 0);
  return {
    rungs,
    criticalMibPerSecond: paused ? options.rateOf(paused) : undefined,
    fastestMibPerSecond: Math.max(...rungs.map((rung) => rung.outcome.writeMibPerSecond)),
  };
}

/** Enough written per rung to cross several thresholds, and at least this many seconds of writing. */
const SECONDS_PER_RUNG = 6;

export async function criticalWriteRate(policy: MailboxPolicy, chunkBytes: number, ratesMibPerSecond: number[], minimumWriteMib: number, options: Pick<GuestRunOptions, 'adaptive'> = {}): Promise<CriticalRate> {
  return climbLadder(
    [...ratesMibPerSecond, undefined],
    async (rate) => {
      const writeMib = Math.max(minimumWriteMib, Math.ceil(((rate ?? 64) * SECONDS_PER_RUNG) / 16) * 16);
      return { throttleMibPerSecond: rate, outcome: await realGuestRun(policy, chunkBytes, writeMib, { ...options, ...(rate ? { throttleMibPerSecond: rate } : {}) }) };
    },
    // Throttled rungs sit far below the guest's full speed, so the throttle is the rate it wrote at.
    { describe: `${policy.name}, real guest`, rateOf: (paused) => paused.throttleMibPerSecond ?? paused.outcome.writeMibPerSecond },
  );
}
