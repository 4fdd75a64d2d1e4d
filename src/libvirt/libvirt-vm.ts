import type { MonitorInput, RunState, VmControl } from '../monitor/ports.js';
import type { LibvirtEvent } from './events.js';
import type { Virsh } from './virsh.js';

/**
 * One libvirt domain as the monitor sees it. Thresholds, high water, state
 * and resume all go through libvirt; tideline never talks to QEMU's monitor
 * behind libvirt's back.
 */
export class LibvirtVm implements VmControl {
  /** Whether this host has seen the domain run: only then is "paused (migrating)" the source's switch-over. */
  private seenRunning = false;
  /** Seen waiting for an incoming migration, and not running here since. */
  private migratingIn = false;
  /**
   * Restored from a save taken while paused for lack of space (its pause
   * mark, src/libvirt/pause-marker.ts): libvirt says "paused (migrating)",
   * which here is the I/O error pause it was.
   */
  restoredPausedForSpace = false;
  /** Restored from a save (`virsh restore`, `start` after managedsave): its "paused (migrating)" is the pause it was saved in, not a migration. */
  restored = false;
  /** target -> libvirt index of the active layer ("vda" -> 1, threshold device "vda[1]"). */
  private readonly indexes = new Map<string, number | undefined>();

  constructor(
    readonly domain: string,
    private readonly virsh: Virsh,
    drives: ReadonlyArray<{ target: string; index: number | undefined }>,
    /** Told when a disk's active layer is no longer the one watched. */
    private readonly onChainChanged?: (target: string) => void,
  ) {
    for (const drive of drives) this.indexes.set(drive.target, drive.index);
  }

  /** A drive the monitor watches now, or its active layer's new index (reconcile). */
  watchDrive(target: string, index: number | undefined): void {
    this.indexes.set(target, index);
  }

  forgetDrive(target: string): void {
    this.indexes.delete(target);
  }

  async setWriteThreshold(drive: string, offsetBytes: number): Promise<void> {
    const index = this.indexes.get(drive);
    await this.virsh.setThreshold(this.domain, index === undefined ? drive : `${drive}[${index}]`, offsetBytes);
  }

  async highWaterMarks(): Promise<Map<string, number>> {
    const marks = new Map<string, number>();
    for (const stats of await this.virsh.blockStats(this.domain)) {
      if (!this.indexes.has(stats.target)) continue;
      if (stats.backingIndex === undefined || stats.backingIndex === this.indexes.get(stats.target)) {
        marks.set(stats.target, stats.allocation);
      } else {
        // A snapshot put a new layer on top, or a commit pivoted onto a lower one: the watched layer no longer takes writes.
        this.onChainChanged?.(stats.target);
      }
    }
    return marks;
  }

  /**
   * libvirt's "paused (I/O error)" is QEMU's 'io-error': the only pause
   * tideline may undo. "paused (migrating)" is both the destination waiting
   * for the incoming state (QEMU's 'inmigrate') and the source at switch-over.
   * A domain that never ran here is the destination's; one that ran here is
   * the source. (libvirt gives the destination no job to ask about: its
   * queries wait for the migration to end or are refused.) "running
   * (post-copy)" is the destination running the VM before the migration
   * ended; "paused (post-copy)" and "paused (post-copy failed)" are plain
   * pauses, never tideline's to undo.
   */
  async runState(): Promise<RunState> {
    const { state, reason } = await this.virsh.state(this.domain);
    if (state === 'running') {
      this.seenRunning = true;
      this.migratingIn = false;
      this.restoredPausedForSpace = false;
      // The destination of a post-copy migration: libvirt holds every block query until the migration ends.
      if (reason === 'post-copy') return 'postcopy';
    }
    if (state !== 'paused') return state;
    if (reason === 'I/O error') return 'io-error';
    // QEMU is still being set up: libvirt answers no block query yet (on a migration's destination, none until it ends).
    if (reason === 'starting up') return 'starting';
    if (reason === 'migrating' && this.restoredPausedForSpace) return 'io-error';
    if (reason === 'migrating' && this.restored && !this.seenRunning) return 'paused';
    if (reason === 'migrating' && !this.seenRunning) {
      this.migratingIn = true;
      return 'inmigrate';
    }
    // A write that finds no space the moment the VM runs here pauses it while
    // libvirt is still finishing the migration, and libvirt then labels that
    // pause "user" (measured with libvirt 9.0). The disk's error tells it
    // apart: no administrator suspended a VM that has not yet run here.
    if (reason === 'user' && this.migratingIn && (await this.noSpaceDrives()).size > 0) return 'io-error';
    return 'paused';
  }

  migratingOut(): Promise<boolean> {
    return this.virsh.migratingOut(this.domain);
  }

  cancelMigration(): Promise<void> {
    return this.virsh.abortJob(this.domain);
  }

  async noSpaceDrives(): Promise<Set<string>> {
    const errors = await this.virsh.blockErrors(this.domain);
    return new Set([...errors].filter(([target, error]) => this.indexes.has(target) && /no space/i.test(error)).map(([target]) => target));
  }

  async resume(): Promise<void> {
    await this.virsh.resume(this.domain);
  }

  /** A libvirt event for this domain as a monitor input, or undefined. */
  translate(event: LibvirtEvent, pathToTarget: (path: string) => string | undefined): MonitorInput | undefined {
    switch (event.kind) {
      case 'block-threshold': {
        // A watched layer under the active one is a drive of its own, named as libvirt names it (vda[2]).
        const layer = `${event.target}[${event.index}]`;
        const drive = this.indexes.has(layer) ? layer : this.indexes.has(event.target) ? event.target : undefined;
        if (drive === undefined) return undefined;
        return { type: 'threshold', drive, highWaterAtLeast: event.thresholdBytes + event.excessBytes };
      }
      case 'io-error-reason': {
        const drive = pathToTarget(event.path);
        if (!drive) return undefined;
        // libvirt says 'pause' where QEMU says 'stop' (error_policy='stop').
        return { type: 'io-error', drive, noSpace: event.reason === 'enospc', action: event.action === 'pause' ? 'stop' : event.action, reason: event.reason };
      }
      case 'lifecycle':
        if (event.event === 'Suspended') return { type: 'stopped' };
        if (event.event === 'Resumed') return { type: 'resumed' };
        return undefined;
      default:
        return undefined;
    }
  }
}
