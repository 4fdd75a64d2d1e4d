import type { RunState } from './ports.js';

/**
 * Live migration as one VM's monitor sees it. The disk stays on its volume;
 * only the VM moves, and each host has its own view of the volume's size
 * (its device-mapper table). So:
 *
 * - on the destination, while QEMU waits for the incoming state
 *   (`inmigrate`), the source's agent is the one extending: this host only
 *   keeps its view of every thin volume refreshed, and announces that view
 *   through its inventory block on the shared storage;
 * - on the source, new space is used only once the destination announced it
 *   sees it: the source refreshes its own view after the destination's. This
 *   order is what keeps data safe, not speed: QEMU reads past the end of a
 *   block device as zeros, so a destination whose view is smaller than what
 *   the guest wrote on the source reads the newest data (and qcow2 tables) as
 *   zeros, silently, before any write of it fails (measured with qemu-io on a
 *   loop device limited below the image's end). oVirt orders it the same way:
 *   the source's VDSM refreshes the destination's volume before its own. When
 *   no destination confirms in time (its agent is down, or sees another
 *   mailbox), the source cancels the migration, and the VM goes on here;
 * - the moment the VM runs here, every volume is refreshed once more and every
 *   threshold armed; from then on the VM is watched as if it had started here;
 * - in post-copy the VM runs here before the migration ends, and libvirt
 *   answers no block query and takes no threshold meanwhile: each drive gets
 *   its free target at once (as if written to its end), a pause for lack of
 *   space is extended at once and resumed as soon as libvirt allows (when
 *   the migration ends), and the thresholds are armed then. A post-copy that
 *   fails leaves the VM "paused (post-copy failed)", never resumed here;
 * - on the source, once QEMU reports `postmigrate` the VM has left: its
 *   monitor stops. A failed or cancelled migration never reaches that state,
 *   so the source goes on watching as before.
 *
 * A pause for migration is never an I/O error pause, so nothing here resumes
 * a VM: only an `io-error` pause that tideline saw for lack of space is ever
 * resumed (src/monitor/no-space-pause.ts).
 */
export type MigrationPhase = 'incoming' | 'left';

export const MIGRATED_AWAY_MESSAGE = 'VM migrated away: no longer watching it here (an extension in flight completes or is abandoned harmlessly: sizes are absolute)';

/**
 * While the VM migrates in, its volumes are refreshed this often (a refresh
 * is one `lvchange --refresh` per volume): the source's extensions wait for
 * it, so it bounds what an extension costs during a migration.
 */
export const DEFAULT_INCOMING_REFRESH_MS = 200;

/** How long the source waits for the destination to announce a volume's new space before it cancels the migration. */
export const DEFAULT_DESTINATION_WAIT_MS = 5_000;

export const ARRIVED_PAUSED_MESSAGE =
  'VM arrived by live migration paused for an I/O error no drive reports (the source paused it for lack of space; QEMU does not carry the drive\'s error across): treating the drives near their end as out of space, then resuming';

export const POST_COPY_MESSAGE =
  'VM runs here in post-copy (its memory still comes from the source): libvirt answers no block query until the migration ends, so each drive is given its free target now as if written to its end, a write that finds no space is extended at once, and thresholds are armed when the migration ends';

export const POST_COPY_PAUSE_MESSAGE =
  'VM paused in post-copy for an I/O error no drive reports (libvirt answers no disk-error query until the migration ends): treating the drives near their end as out of space, then resuming once libvirt allows';

export const MIGRATION_CANCELLED_MESSAGE =
  'no destination of this live migration sees the new space of the volume: migration cancelled, the VM goes on here (on the destination it would read what the guest wrote there as zeros)';

export function migrationPhase(runState: RunState): MigrationPhase | undefined {
  if (runState === 'inmigrate') return 'incoming';
  if (runState === 'postmigrate') return 'left';
  return undefined;
}
