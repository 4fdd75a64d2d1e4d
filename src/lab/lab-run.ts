import { readFile, statfs, writeFile } from 'node:fs/promises';
import path from 'node:path';
import logUpdate from 'log-update';
import type { LabSettings } from '../config/lab-settings.js';
import { DirectExtender } from '../agent/direct-extender.js';
import { QemuAttachment } from '../agent/qemu-attachment.js';
import { TideError, errorMessage } from '../errors.js';
import { createLogger } from '../log/logger.js';
import type { MonitorEvents, VmStatus } from '../monitor/vm-monitor.js';
import { QmpClient } from '../qmp/client.js';
import { QmpVm } from '../qemu/qmp-vm.js';
import { sleep, type Clock } from '../util/clock.js';
import type { Runner } from '../util/runner.js';
import { formatSize, MiB } from '../util/sizes.js';
import { defaultCacheDir, ensureBootImage, type BootImage } from './boot-image.js';
import { describeRun, formatEvent, labChart, renderLive, type LabOutcome, type LabVerdict } from './lab-view.js';
import { LabVm } from './lab-vm.js';
import { Workspace } from './workspace.js';

/**
 * `tideline lab`: one guest writes into a thin volume on a loop storage domain
 * while the monitor grows it, then reads everything back. It is both the
 * demonstration and the quickest end-to-end check on a new host.
 */
export interface LabRunOptions {
  settings: LabSettings;
  run: Runner;
  clock: Clock;
  out: NodeJS.WritableStream & { isTTY?: boolean; rows?: number };
  /** Aborting stops the guest and cleans up (the CLI wires SIGINT/SIGTERM here). */
  signal?: AbortSignal;
}

export class LabSetupError extends TideError {
  readonly code = 'lab-setup';
}

const TICK_MS = 500;
const NO_MONITOR_STUCK_MS = 3_000;
const MONITOR_STUCK_MS = 20_000;
const RECENT_EVENTS = 6;
const MIN_LIVE_ROWS = 16;
/** Room beyond the data for qcow2 metadata and the loop domain's own files. */
const SCRATCH_MARGIN_BYTES = 256 * MiB;

export const LAB_EXIT_CODES: Record<LabVerdict, number> = {
  verified: 0,
  'data-mismatch': 1,
  incomplete: 1,
  'stayed-paused': 3,
  interrupted: 130,
};

export async function runLab(options: LabRunOptions): Promise<LabOutcome> {
  const { settings, run, clock, out } = options;
  const startedAt = clock.now();
  // A terminal too small to hold the table gets event lines instead of a redrawn view.
  const live = out.isTTY === true && (out.rows ?? 0) >= MIN_LIVE_ROWS;
  const print = (line: string) => out.write(`${line}\n`);

  print(describeRun(settings));
  await checkScratchSpace(settings.write + SCRATCH_MARGIN_BYTES);
  print('preparing the boot image (the first run unpacks Debian\'s kernel package into the cache)');
  const boot = await prepareLab(run);

  const workspace = await Workspace.create({ prefix: 'tideline-lab-', capacityBytes: settings.virtualSize * 2, run });
  const logger = createLogger({ destination: path.join(workspace.dir, 'tideline.log') });
  let vm: LabVm | undefined;
  let attachment: QemuAttachment | undefined;
  const admin = new QmpClient(path.join(workspace.dir, 'lab.admin.sock'), { clock, logger });
  try {
    vm = await LabVm.create({
      name: 'lab',
      workDir: workspace.dir,
      boot,
      plugin: workspace.plugin,
      run,
      virtualBytes: settings.virtualSize,
      initialBytes: settings.initialSize,
      writeMib: settings.write / MiB,
      timeoutMs: settings.timeoutSeconds * 1000,
    });
    await workspace.recordPid('lab', vm.qemu.pid);
    print(`QEMU ${vm.qemu.pid} started; work directory ${workspace.dir}`);

    const events: string[] = [];
    let maxExtensionMs: number | null = null;
    const note = (line: string) => {
      events.push(line);
      if (events.length > RECENT_EVENTS) events.shift();
      if (!live) print(line);
    };

    const adminVm = new QmpVm(admin);
    await untilQemuAnswers(admin.start(), vm);
    await adminVm.discover();

    if (settings.monitor) {
      attachment = new QemuAttachment({
        vm: 'lab',
        socketPath: vm.qmpSocket,
        plugin: workspace.plugin,
        extender: new DirectExtender(workspace.plugin, { clock, delayMs: settings.extendDelayMs }),
        policy: { chunkBytes: settings.chunk, freeTargetBytes: settings.freeTarget, extentBytes: MiB, adaptive: settings.adaptive, adaptiveMaxChunkBytes: Math.max(settings.chunk, 4096 * MiB) },
        clock,
        logger,
        pollIntervalMs: 1_000,
        retryDelayMs: 2_000,
      });
      for (const name of ['extended', 'extension-failed', 'paused', 'resumed'] as const) {
        attachment.on(name, (...args: unknown[]) => {
          const line = formatEvent(name, ...(args as MonitorEvents[typeof name]));
          if (line) note(line);
          if (name === 'extended') maxExtensionMs = Math.max(maxExtensionMs ?? 0, (args[0] as MonitorEvents['extended'][0]).latencyMs);
        });
      }
      await untilQemuAnswers(attachment.start(), vm);
    }

    const unwatched = new UnwatchedStatus(vm, adminVm, clock);
    const stuckLimitMs = settings.monitor ? Math.max(MONITOR_STUCK_MS, settings.extendDelayMs * 2 + 10_000) : NO_MONITOR_STUCK_MS;
    let pausedSince: number | undefined;
    let lastPrintedMib = -1;
    let verdict: LabVerdict | undefined;
    let reason: string | undefined;
    let exited = false;
    void vm.qemu.exited.then(() => (exited = true));
    const timeline: Array<{ seconds: number; volumeBytes: number; highWaterBytes: number }> = [];

    const currentStatus = async (): Promise<VmStatus> => attachment?.status() ?? (await unwatched.status());
    while (!exited) {
      if (options.signal?.aborted) {
        verdict = 'interrupted';
        reason = 'interrupted; the guest was stopped and everything the lab made removed';
        break;
      }
      await Promise.race([sleep(clock, TICK_MS), vm.qemu.exited]);
      if (exited) break;
      const runState = await adminVm.runState().catch(() => undefined);
      const status = await currentStatus();
      const sampled = status.drives[0];
      if (sampled) timeline.push({ seconds: (clock.now() - startedAt) / 1000, volumeBytes: sampled.volumeBytes, highWaterBytes: sampled.highWaterBytes });
      if (runState === 'io-error') {
        pausedSince ??= clock.now();
        if (clock.now() - pausedSince >= stuckLimitMs) {
          verdict = 'stayed-paused';
          reason = stuckReason(status, settings.monitor, clock.now() - pausedSince);
          break;
        }
      } else {
        pausedSince = undefined;
      }
      if (live) {
        logUpdate(renderLive({ elapsedMs: clock.now() - startedAt, phase: vm.phase, progress: vm.progress, writeBytes: settings.write, status, recentEvents: events }));
      } else if (vm.progress.writtenMib !== lastPrintedMib && vm.progress.writtenMib % 256 === 0) {
        lastPrintedMib = vm.progress.writtenMib;
        const drive = status.drives[0];
        print(`guest ${vm.phase}: ${vm.progress.writtenMib} MiB written; volume ${formatSize(drive?.volumeBytes ?? 0)}, high-water ${formatSize(drive?.highWaterBytes ?? 0)}`);
      }
    }
    if (live) logUpdate.done();

    const status = await currentStatus();
    attachment?.stop();
    admin.close();
    await vm.qemu.kill();
    if (!verdict) {
      const progress = vm.progress;
      if (vm.verified) verdict = 'verified';
      else if (progress.result && progress.result.bad > 0) {
        verdict = 'data-mismatch';
        reason = `${progress.result.bad} of ${progress.result.units} units read back differ from what the guest wrote`;
      } else {
        verdict = 'incomplete';
        reason = progress.errors.length > 0 ? `the guest reported: ${progress.errors.join('; ')}` : `QEMU ended before the guest reported a result (${vm.phase}); see the console lines below`;
      }
    }
    const consoleTail = verdict === 'verified' ? [] : await tail(vm.consoleLog, 15);
    const chartPath = settings.chart && timeline.length > 0 ? await writeFile(settings.chart, labChart(timeline, settings.initialSize)).then(() => settings.chart, (error: unknown) => {
      logger.warn({ file: settings.chart, err: errorMessage(error) }, 'could not write the chart');
      return undefined;
    }) : undefined;
    return {
      verdict,
      ...(reason ? { reason } : {}),
      elapsedMs: clock.now() - startedAt,
      initialBytes: settings.initialSize,
      status,
      progress: vm.progress,
      maxExtensionMs,
      ...(settings.keep ? { workDir: workspace.dir } : {}),
      consoleTail,
      ...(chartPath ? { chartPath } : {}),
    };
  } finally {
    attachment?.stop();
    admin.close();
    if (vm) await vm.qemu.kill();
    await workspace.dispose({ keepFiles: settings.keep }).catch((error: unknown) => logger.warn({ err: errorMessage(error) }, 'lab cleanup failed'));
  }
}

export function prepareLab(run: Runner): Promise<BootImage> {
  return ensureBootImage({ cacheDir: defaultCacheDir(), run, logger: createLogger({ level: 'warn' }) });
}

/** Without a monitor the lab still shows the drive, read straight from QEMU and the volume. */
class UnwatchedStatus {
  private pauses = 0;
  private pausedMsTotal = 0;
  private pausedAt: number | undefined;

  constructor(
    private readonly vm: LabVm,
    private readonly control: QmpVm,
    private readonly clock: Clock,
  ) {}

  async status(): Promise<VmStatus> {
    const [marks, runState, described] = await Promise.all([
      this.control.highWaterMarks().catch(() => new Map<string, number>()),
      this.control.runState().catch(() => undefined),
      this.vm.options.plugin.describe(this.vm.volume).catch(() => undefined),
    ]);
    const paused = runState === 'io-error';
    const now = this.clock.now();
    if (paused && this.pausedAt === undefined) {
      this.pausedAt = now;
      this.pauses += 1;
    } else if (!paused && this.pausedAt !== undefined) {
      this.pausedMsTotal += now - this.pausedAt;
      this.pausedAt = undefined;
    }
    return {
      vm: 'lab',
      pausedForNoSpace: paused,
      pauses: this.pauses,
      pausedMsTotal: this.pausedMsTotal + (this.pausedAt === undefined ? 0 : now - this.pausedAt),
      lastResumeMs: null,
      migration: null,
      lastArrivalMs: null,
      drives: [
        {
          drive: 'vda',
          volume: this.vm.volume,
          phase: paused ? 'paused-enospc' : 'ok',
          highWaterBytes: marks.get('vda') ?? 0,
          volumeBytes: described?.sizeBytes ?? 0,
          thresholdBytes: null,
          capBytes: 0,
          extensions: 0,
          lastExtensionMs: null,
          writeBytesPerSecond: 0,
          error: null,
        },
      ],
    };
  }
}

function stuckReason(status: VmStatus, monitored: boolean, pausedMs: number): string {
  const seconds = (pausedMs / 1000).toFixed(0);
  const drive = status.drives[0];
  const where = drive ? `${drive.drive} (volume ${formatSize(drive.volumeBytes)}, high-water ${formatSize(drive.highWaterBytes)})` : 'its disk';
  if (!monitored) return `the VM paused with ENOSPC on ${where} and stayed paused for ${seconds} s: without the monitor nothing extends the volume`;
  const errors = status.drives.filter((candidate) => candidate.error).map((candidate) => `${candidate.drive}: ${candidate.error!.message}`);
  return `the VM paused with ENOSPC on ${where} and the monitor could not resume it within ${seconds} s${errors.length ? ` (${errors.join('; ')})` : ''}`;
}

/** Waits for a QMP connection, but gives up with the console's last words if QEMU dies first. */
async function untilQemuAnswers(connected: Promise<void>, vm: LabVm): Promise<void> {
  const died = vm.qemu.exited.then(async ({ exitCode, signal }) => {
    const lines = await tail(vm.consoleLog, 10);
    throw new LabSetupError(`QEMU exited (${signal ?? `code ${exitCode}`}) before its QMP socket answered:\n${lines.join('\n')}`);
  });
  await Promise.race([connected, died]);
  died.catch(() => undefined);
}

async function checkScratchSpace(neededBytes: number): Promise<void> {
  const stats = await statfs('/var/tmp');
  const free = stats.bavail * stats.bsize;
  if (free < neededBytes) {
    throw new LabSetupError(`/var/tmp has ${formatSize(free)} free but the lab needs about ${formatSize(neededBytes)} for the volume: free some space or lower --write`);
  }
}

async function tail(file: string, count: number): Promise<string[]> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.split('\n').filter((line) => line.trim() !== '').slice(-count);
}
