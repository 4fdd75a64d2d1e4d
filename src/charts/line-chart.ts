import { scaleLinear, scaleLog, type ScaleContinuousNumeric } from 'd3-scale';
import { curveStepAfter, line } from 'd3-shape';

/**
 * A small SVG line chart (pure: data in, SVG text out), for pictures beside
 * the benchmark's tables and at the end of a lab run. d3-scale picks the
 * axes' ranges and ticks, d3-shape draws the lines; the SVG around them is
 * plain text so that it opens in any browser and renders on GitHub.
 */
export interface Series {
  name: string;
  points: ReadonlyArray<readonly [number, number]>;
}

export interface LineChart {
  title: string;
  xLabel: string;
  yLabel: string;
  series: readonly Series[];
  /** 'log' for values spread over decades (latencies, write rates); every x must then be > 0. */
  xScale?: 'linear' | 'log';
  /** Steps (a size that holds until it changes) instead of straight segments. */
  steps?: boolean;
  /** Formats tick values; default: the scale's own. */
  formatX?: (value: number) => string;
  formatY?: (value: number) => string;
}

const WIDTH = 720;
const HEIGHT = 400;
const MARGIN = { top: 40, right: 170, bottom: 50, left: 80 };
/** Colour-blind-safe (Okabe-Ito). */
const COLOURS = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000'];

export function escapeXml(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');
}

/** A single value gets room around it: a decade either side on a log scale, one unit on a linear one. */
function extent(values: number[], fallback: [number, number], log = false): [number, number] {
  if (values.length === 0) return fallback;
  const low = Math.min(...values);
  const high = Math.max(...values);
  if (low !== high) return [low, high];
  return log ? [low / 10, high * 10] : [low - 1, high + 1];
}

export function renderLineChart(chart: LineChart): string {
  const points = chart.series.flatMap((series) => series.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const log = chart.xScale === 'log';
  const xs = points.map(([x]) => x).filter((x) => !log || x > 0);
  const [xLow, xHigh] = extent(xs, log ? [1, 10] : [0, 1], log);
  const x: ScaleContinuousNumeric<number, number> = (log ? scaleLog().domain([xLow, xHigh]) : scaleLinear().domain([xLow, xHigh])).range([MARGIN.left, WIDTH - MARGIN.right]).nice();
  const [, yHigh] = extent(points.map(([, y]) => y), [0, 1]);
  const y = scaleLinear().domain([0, Math.max(yHigh, 1e-9)]).range([HEIGHT - MARGIN.bottom, MARGIN.top]).nice();
  const formatX = chart.formatX ?? x.tickFormat(6);
  const formatY = chart.formatY ?? y.tickFormat(6);
  const path = line<readonly [number, number]>()
    .x(([value]) => x(value))
    .y(([, value]) => y(value));
  if (chart.steps) path.curve(curveStepAfter);

  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="12">`,
    `<title>${escapeXml(chart.title)}</title>`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`,
    `<text x="${MARGIN.left}" y="${MARGIN.top - 16}" font-size="14" font-weight="bold">${escapeXml(chart.title)}</text>`,
  ];
  for (const tick of x.ticks(log ? 5 : 8)) {
    parts.push(`<line x1="${x(tick)}" x2="${x(tick)}" y1="${MARGIN.top}" y2="${HEIGHT - MARGIN.bottom}" stroke="#e5e5e5"/>`);
    const label = formatX(tick);
    if (label) parts.push(`<text x="${x(tick)}" y="${HEIGHT - MARGIN.bottom + 16}" text-anchor="middle">${escapeXml(label)}</text>`);
  }
  for (const tick of y.ticks(6)) {
    parts.push(`<line x1="${MARGIN.left}" x2="${WIDTH - MARGIN.right}" y1="${y(tick)}" y2="${y(tick)}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${MARGIN.left - 8}" y="${y(tick) + 4}" text-anchor="end">${escapeXml(formatY(tick))}</text>`);
  }
  parts.push(
    `<line x1="${MARGIN.left}" x2="${WIDTH - MARGIN.right}" y1="${HEIGHT - MARGIN.bottom}" y2="${HEIGHT - MARGIN.bottom}" stroke="black"/>`,
    `<line x1="${MARGIN.left}" x2="${MARGIN.left}" y1="${MARGIN.top}" y2="${HEIGHT - MARGIN.bottom}" stroke="black"/>`,
    `<text x="${(MARGIN.left + WIDTH - MARGIN.right) / 2}" y="${HEIGHT - 12}" text-anchor="middle">${escapeXml(chart.xLabel)}</text>`,
    `<text transform="translate(18 ${(MARGIN.top + HEIGHT - MARGIN.bottom) / 2}) rotate(-90)" text-anchor="middle">${escapeXml(chart.yLabel)}</text>`,
  );
  chart.series.forEach((series, index) => {
    const colour = COLOURS[index % COLOURS.length]!;
    const usable = series.points.filter(([px, py]) => Number.isFinite(px) && Number.isFinite(py) && (!log || px > 0));
    const d = path(usable);
    if (d) parts.push(`<path d="${d}" fill="none" stroke="${colour}" stroke-width="2"><title>${escapeXml(series.name)}</title></path>`);
    if (usable.length <= 12) for (const [px, py] of usable) parts.push(`<circle cx="${x(px)}" cy="${y(py)}" r="3" fill="${colour}"/>`);
    const legendY = MARGIN.top + 8 + index * 20;
    parts.push(
      `<line x1="${WIDTH - MARGIN.right + 12}" x2="${WIDTH - MARGIN.right + 32}" y1="${legendY}" y2="${legendY}" stroke="${colour}" stroke-width="2"/>`,
      `<text x="${WIDTH - MARGIN.right + 38}" y="${legendY + 4}">${escapeXml(series.name)}</text>`,
    );
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

/** A distribution as a cumulative curve: for each sample, the fraction of samples at or below it. */
export function cumulative(samples: readonly number[]): Array<[number, number]> {
  const sorted = [...samples].filter(Number.isFinite).sort((a, b) => a - b);
  return sorted.map((value, index) => [value, (index + 1) / sorted.length]);
}
