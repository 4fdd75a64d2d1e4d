import type { Extender, RunState, VmControl } from '../../src/monitor/ports.js';
import { sleep, type Clock } from '../../src/util/clock.js';

/** A VM and a storage that behave like QEMU and a VG, recording what the monitor did to them. */
export class FakeVm implements VmControl {
  runStateValue: RunState = 'running';
  highWater = new Map<string, number>();
  noSpace = new Set<string>();
  thresholds = new Map<string, number>();
  resumes = 0;
  failNextCalls = 0;

  /** While set, threshold changes wait for it (libvirt holds them back during a migration job). */
  thresholdsHeld: Promise<void> | undefined;
  /** While set, only the run state is answered (libvirt on a post-copy destination holds everything else until the migration ends); what was asked is counted. */
  heldByMigration = false;
  askedWhileHeld: string[] = [];

  async setWriteThreshold(drive: string, offsetBytes: number): Promise<void> {
    this.maybeFail();
    this.refuseWhileHeld('threshold');
    if (this.thresholdsHeld) await this.thresholdsHeld;
    this.thresholds.set(drive, offsetBytes);
  }

  async highWaterMarks(): Promise<Map<string, number>> {
    this.maybeFail();
    this.refuseWhileHeld('high water');
    return new Map(this.highWater);
  }

  async runState(): Promise<RunState> {
    return this.runStateValue;
  }

  async noSpaceDrives(): Promise<Set<string>> {
    this.refuseWhileHeld('disk errors');
    return new Set(this.noSpace);
  }

  async resume(): Promise<void> {
    this.refuseWhileHeld('resume');
    this.resumes += 1;
    this.runStateValue = 'running';
    this.noSpace.clear();
  }

  /** An outgoing live migration under way; cancelMigration ends it. */
  migrating = false;
  migrationCancels = 0;

  async migratingOut(): Promise<boolean> {
    return this.migrating;
  }

  async cancelMigration(): Promise<void> {
    this.migrationCancels += 1;
    this.migrating = false;
  }

  private refuseWhileHeld(question: string): void {
    if (!this.heldByMigration) return;
    this.askedWhileHeld.push(question);
    throw new Error(`libvirt did not answer (${question}) within the timeout: the incoming migration holds the domain`);
  }

  private maybeFail(): void {
    if (this.failNextCalls > 0) {
      this.failNextCalls -= 1;
      throw new Error('QMP connection closed');
    }
  }
}

export class FakeStorage implements Extender {
  sizes = new Map<string, number>();
  requests: Array<{ volume: string; targetBytes: number }> = [];
  refreshes = 0;
  delayMs = 0;
  failures: Error[] = [];

  constructor(private readonly clock: Clock) {}

  async extend(volume: string, targetBytes: number): Promise<number> {
    this.requests.push({ volume, targetBytes });
    if (this.delayMs) await sleep(this.clock, this.delayMs);
    const failure = this.failures.shift();
    if (failure) throw failure;
    const size = Math.max(this.sizes.get(volume) ?? 0, targetBytes);
    this.sizes.set(volume, size);
    return size;
  }

  async refresh(volume: string): Promise<number> {
    this.refreshes += 1;
    return this.sizes.get(volume) ?? 0;
  }
}
