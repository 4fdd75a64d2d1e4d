/** Percentiles over raw samples (nearest-rank), for benchmark tables. */
export interface Summary {
  count: number;
  p50: number;
  p99: number;
  max: number;
  /** Every sample, ascending: the charts draw the whole distribution. */
  samples: readonly number[];
}

export function summarize(samples: readonly number[]): Summary {
  if (samples.length === 0) return { count: 0, p50: Number.NaN, p99: Number.NaN, max: Number.NaN, samples: [] };
  const sorted = [...samples].sort((left, right) => left - right);
  const rank = (fraction: number) => sorted[Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1)]!;
  return { count: sorted.length, p50: rank(0.5), p99: rank(0.99), max: sorted[sorted.length - 1]!, samples: sorted };
}

export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return '-';
  return ms < 10 ? `${ms.toFixed(2)} ms` : `${Math.round(ms)} ms`;
}
