import { renderLineChart } from '../charts/line-chart.js';
import type { LabSettings } from '../config/lab-settings.js';
import type { MonitorEvents, VmStatus } from '../monitor/vm-monitor.js';
import { renderStatusTable } from '../cli/status-table.js';
import { formatSize, MiB } from '../util/sizes.js';
import type { GuestPhase, GuestProgress } from './lab-vm.js';

/** What the lab shows, as text built from plain values (no terminal, no timers). */
export interface LabSnapshot {
  elapsedMs: number;
  phase: GuestPhase;
  progress: GuestProgress;
  writeBytes: number;
  status: VmStatus;
  recentEvents: readonly string[];
}

export type LabVerdict = 'verified' | 'data-mismatch' | 'incomplete' | 'stayed-paused' | 'interrupted';

export interface LabOutcome {
  verdict: LabVerdict;
  /** One sentence on why the run failed; absent when verified. */
  reason?: string;
  elapsedMs: number;
  initialBytes: number;
  status: VmStatus;
  progress: GuestProgress;
  maxExtensionMs: number | null;
  workDir?: string;
  consoleTail: readonly string[];
  /** The SVG chart of volume size and high-water over time, when one was written. */
  chartPath?: string;
}

export function describeRun(settings: LabSettings): string {
  const monitor = settings.monitor
    ? `chunk ${formatSize(settings.chunk)}, extend when less than ${formatSize(settings.freeTarget)} is free${settings.adaptive ? ', adaptive' : ''}${settings.extendDelayMs ? `, extensions delayed ${settings.extendDelayMs} ms` : ''}`
    : 'no monitor: nothing will extend the volume';
  return `tideline lab: the guest writes ${formatSize(settings.write)} into a ${formatSize(settings.virtualSize)} qcow2 disk on a ${formatSize(settings.initialSize)} thin volume (${monitor})`;
}

export function renderLive(snapshot: LabSnapshot): string {
  const { progress } = snapshot;
  const total = snapshot.writeBytes / MiB;
  const guest = {
    booting: 'booting',
    writing: `writing ${progress.writtenMib}/${total} MiB`,
    reading: `written in ${progress.writeSeconds?.toFixed(1)} s; reading back and verifying`,
    done: 'done',
  }[snapshot.phase];
  const paused = snapshot.status.pausedForNoSpace ? '   VM PAUSED (no space)' : '';
  const lines = [`[${formatElapsed(snapshot.elapsedMs)}] guest: ${guest}${paused}`, renderStatusTable([snapshot.status])];
  if (snapshot.recentEvents.length > 0) lines.push(...snapshot.recentEvents);
  return lines.join('\n');
}

export function formatEvent<K extends keyof MonitorEvents>(name: K, ...args: MonitorEvents[K]): string | undefined {
  const event = args[0] as Record<string, unknown> | undefined;
  switch (name) {
    case 'extended': {
      const e = event as MonitorEvents['extended'][0];
      return `extended ${e.drive} (${e.volume}) ${formatSize(e.fromBytes)} -> ${formatSize(e.toBytes)} in ${Math.round(e.latencyMs)} ms`;
    }
    case 'extension-failed': {
      const e = event as MonitorEvents['extension-failed'][0];
      return `extension of ${e.drive} (${e.volume}) failed [${e.code}]: ${e.message}`;
    }
    case 'paused': {
      const e = event as MonitorEvents['paused'][0];
      return `VM paused: no space on ${e.drives.join(', ')}`;
    }
    case 'resumed': {
      const e = event as MonitorEvents['resumed'][0];
      return `VM resumed after ${(e.pausedMs / 1000).toFixed(1)} s`;
    }
    default:
      return undefined;
  }
}

/** Volume size and high-water mark over the run, as steps: each holds until it changes. */
export function labChart(timeline: ReadonlyArray<{ seconds: number; volumeBytes: number; highWaterBytes: number }>, initialBytes: number): string {
  const mib = (bytes: number) => bytes / MiB;
  return renderLineChart({
    title: `tideline lab: a ${formatSize(initialBytes)} thin volume growing under a writing guest`,
    xLabel: 'seconds since the start',
    yLabel: 'MiB',
    steps: true,
    series: [
      { name: 'volume size', points: timeline.map((sample) => [sample.seconds, mib(sample.volumeBytes)] as const) },
      { name: 'high-water mark', points: timeline.map((sample) => [sample.seconds, mib(sample.highWaterBytes)] as const) },
    ],
  });
}

export function renderSummary(outcome: LabOutcome): string {
  const drive = outcome.status.drives[0];
  const { progress } = outcome;
  const lines: string[] = [];
  const result = progress.result;
  if (outcome.verdict === 'verified' && result) {
    lines.push(`PASSED: ${result.units * 16} MiB written and read back intact (${result.units} units, body md5 ${result.bodyMd5})`);
  } else {
    lines.push(`FAILED (${outcome.verdict}): ${outcome.reason ?? 'unknown reason'}`);
  }
  if (drive) {
    const latency = drive.lastExtensionMs === null ? '' : `; extension latency last ${Math.round(drive.lastExtensionMs)} ms, max ${Math.round(outcome.maxExtensionMs ?? 0)} ms`;
    lines.push(`volume:  ${formatSize(outcome.initialBytes)} -> ${formatSize(drive.volumeBytes)} in ${drive.extensions} extensions${latency}`);
    lines.push(`high-water: ${formatSize(drive.highWaterBytes)}`);
  }
  const status = outcome.status;
  lines.push(`pauses:  ${status.pauses}${status.pauses ? ` (${(status.pausedMsTotal / 1000).toFixed(1)} s paused in total)` : ''}`);
  if (progress.writeSeconds !== undefined) {
    const rate = progress.writeSeconds > 0 ? ` (${Math.round(progress.writtenMib / progress.writeSeconds)} MiB/s)` : '';
    lines.push(`guest:   wrote ${progress.writtenMib} MiB in ${progress.writeSeconds.toFixed(1)} s${rate}${progress.readSeconds !== undefined ? `, read back in ${progress.readSeconds.toFixed(1)} s` : ''}`);
  }
  for (const error of progress.errors) lines.push(`guest error: ${error}`);
  lines.push(`elapsed: ${formatElapsed(outcome.elapsedMs)}`);
  if (outcome.workDir) lines.push(`kept:    ${outcome.workDir} (volume files, console log, tideline.log)`);
  if (outcome.verdict !== 'verified' && outcome.consoleTail.length > 0) lines.push('guest console (last lines):', ...outcome.consoleTail.map((line) => `  ${line}`));
  if (outcome.chartPath) lines.push(`chart:   ${outcome.chartPath} (volume size and high-water over time)`);
  return lines.join('\n');
}

function formatElapsed(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, '0')}`;
}
