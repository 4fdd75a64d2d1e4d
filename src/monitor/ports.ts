import type { DriveConfig } from './drive-state.js';

/**
 * What the monitor needs from the outside world. Adapters implement these over
 * QMP or libvirt (the VM) and over the storage plugin or the mailbox (space);
 * tests implement them with fakes.
 */

/** Gets more space for a volume and makes this host see it. */
export interface Extender {
  /** Grows `volume` to at least `targetBytes` (absolute); resolves with the size the storage now has. */
  extend(volume: string, targetBytes: number): Promise<number>;
  /** Makes this host see the volume's current size; resolves with the size this host sees. */
  refresh(volume: string): Promise<number>;
}

/**
 * QEMU's run state names (qapi/run-state.json); 'io-error' is the one only an
 * I/O error causes. One is tideline's own: 'starting', a VM its hypervisor is
 * still setting up (libvirt's "paused (starting up)"), which answers no block
 * query yet. QEMU's 'prelaunch' (started with -S) is not that: its block layer
 * works and can be written. Another is 'postcopy': the destination of a
 * post-copy migration runs the VM while its memory still comes from the
 * source (libvirt's "running (post-copy)"), and its hypervisor answers no
 * block query and takes no threshold until the migration ends.
 */
export type RunState = 'running' | 'paused' | 'io-error' | 'shutdown' | 'inmigrate' | 'postmigrate' | 'starting' | 'suspended' | 'postcopy' | string;

/** The running VM as the monitor sees it. Drives are named as in the VM (vda). */
export interface VmControl {
  /** One-shot: fires once when a write ends past the offset, then must be set again. */
  setWriteThreshold(drive: string, offsetBytes: number): Promise<void>;
  /** Highest offset written on each drive's volume (wr_highest_offset of the protocol node). */
  highWaterMarks(): Promise<Map<string, number>>;
  runState(): Promise<RunState>;
  /** Drives whose last write failed for lack of space (query-block io-status "nospace"). */
  noSpaceDrives(): Promise<Set<string>>;
  resume(): Promise<void>;
  /** Whether an outgoing live migration of this VM is under way (QMP query-migrate, libvirt's job). */
  migratingOut(): Promise<boolean>;
  /** Cancels the outgoing live migration; the VM goes on running here. */
  cancelMigration(): Promise<void>;
}

/**
 * What a drive's image allows it to grow to now. The cap follows the image
 * (an administrator's `virsh blockresize` or `qemu-img resize` grows it on a
 * running VM, and no event says so), never a number taken once at attach.
 */
export interface DriveCapacity {
  /** The cap the drive's image gives now (its virtual size fully allocated, within the policy's max size). */
  capBytes(drive: DriveConfig): Promise<number>;
}

/**
 * The other host of a live migration, reached through the shared storage
 * (src/monitor/migration.ts). Absent where no mailbox is shared: a single
 * host has nobody to migrate to.
 */
export type DestinationWait = 'announced' | 'abandoned';

export interface MigrationPeers {
  /** Publishes the size this host sees a volume at while its VM migrates in here; undefined once it no longer does. */
  announceIncomingView(volume: string, viewBytes: number | undefined): Promise<void>;
  /**
   * Resolves 'announced' once another host announces `volume` incoming at
   * `bytes` or more, 'abandoned' as soon as `signal` aborts (the migration
   * ended); rejects with DestinationViewStaleError when none does in time.
   */
  awaitDestinationView(volume: string, bytes: number, signal: AbortSignal): Promise<DestinationWait>;
}

export type MonitorInput =
  | { type: 'threshold'; drive: string; highWaterAtLeast: number }
  | { type: 'io-error'; drive: string; noSpace: boolean; action: string; reason?: string }
  | { type: 'stopped' }
  | { type: 'resumed' }
  /** libvirt (its hook's `migrate begin`, or "Started Migrated") says the VM is migrating in to this host. */
  | { type: 'migrating-in' }
  /**
   * The VM was restored from a save taken while it was paused for lack of
   * space (src/libvirt/pause-marker.ts): no drive reports the error any more,
   * and the writes that failed are retried once it runs.
   */
  | { type: 'restored-paused-for-space' }
  /** The channel to the VM was re-established: thresholds may be gone, events may have been missed. */
  | { type: 'reconnected' };
