import { cumulative, renderLineChart, type Series } from '../src/charts/line-chart.js';
import type { RateRung } from './critical-rate.js';
import type { Summary } from './stats.js';

/**
 * The pictures beside bench/results.md: figure 1's latency distributions as
 * cumulative curves, and figure 3's pauses at each write rate per policy.
 */
export function latencyChart(title: string, subjects: ReadonlyArray<{ subject: string; summary: Summary }>): string {
  return renderLineChart({
    title,
    xLabel: 'round trip (ms, log scale)',
    yLabel: 'share of round trips at or below',
    xScale: 'log',
    steps: true,
    formatY: (value) => `${Math.round(value * 100)} %`,
    series: subjects.map(({ subject, summary }) => ({ name: subject, points: cumulative(summary.samples) })),
  });
}

/** A rung without a throttle ran at the writer's full speed: it is placed at the rate it reached. */
export function pausesChart(title: string, ladders: ReadonlyArray<{ subject: string; rungs: readonly RateRung[] }>): string {
  const series: Series[] = ladders.map(({ subject, rungs }) => ({
    name: subject,
    points: rungs
      .map((rung) => [rung.throttleMibPerSecond ?? rung.outcome.writeMibPerSecond, rung.outcome.pauses] as [number, number])
      .sort((a, b) => a[0] - b[0]),
  }));
  return renderLineChart({ title, xLabel: 'guest write rate (MiB/s, log scale)', yLabel: 'pauses (VM stopped for lack of space)', xScale: 'log', series });
}
