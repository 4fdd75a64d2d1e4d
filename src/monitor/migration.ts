import type { RunState } from './ports.js';

/**
 * Live migration as one VM's monitor sees it. The disk stays on its volume;
 * only the VM moves, and each host has its own view of the volume's size
 * (its device-mapper table). So:
 *
 * - on the destination, while QEMU waits for the incoming state
 *   (`inmigrate`), the source's agent is the one extending: this host only
 *   keeps its view of every thin volume refreshed, so the guest starts here
 *   with the space the source got;
 * - the moment the VM runs here, every volume is refreshed once more and every
 *   threshold armed; from then on the VM is watched as if it had started here;
 * - on the source, once QEMU reports `postmigrate` the VM has left: its
 *   monitor stops. A failed or cancelled migration never reaches that state,
 *   so the source goes on watching as before.
 *
 * A pause for migration is never an I/O error pause, so nothing here resumes
 * a VM: only an `io-error` pause that tideline saw for lack of space is ever
 * resumed (VmMonitor.maybeResume).
 */
export type MigrationPhase = 'incoming' | 'left';

export const MIGRATED_AWAY_MESSAGE = 'VM migrated away: no longer watching it here (an extension in flight completes or is abandoned harmlessly: sizes are absolute)';

/** While the VM migrates in, its volumes are refreshed this often (a refresh is one `lvchange --refresh` per volume). */
export const DEFAULT_INCOMING_REFRESH_MS = 1_000;

export function migrationPhase(runState: RunState): MigrationPhase | undefined {
  if (runState === 'inmigrate') return 'incoming';
  if (runState === 'postmigrate') return 'left';
  return undefined;
}
