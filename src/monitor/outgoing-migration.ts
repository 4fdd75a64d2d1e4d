import type { Logger } from 'pino';
import { errorCode, errorMessage } from '../errors.js';
import { sleep, type Clock } from '../util/clock.js';
import { MIGRATION_CANCELLED_MESSAGE } from './migration.js';
import type { MigrationPeers, VmControl } from './ports.js';

/** How often the source looks whether a migration it cancelled has ended. */
const CANCEL_POLL_MS = 100;
/** While the source awaits its destination, it asks this often whether the migration still runs (under libvirt, one job-statistics question to libvirtd). */
const MIGRATION_END_CHECK_MS = 250;
const CANCEL_WAIT_MS = 30_000;

export interface OutgoingMigrationGateOptions {
  vm: string;
  control: VmControl;
  /** Absent where no mailbox is shared: nothing migrates between hosts, and nothing is held. */
  peers?: MigrationPeers;
  clock: Clock;
  logger: Logger;
  /** The VM's monitor stopped: no more looks at the job. */
  stopped(): boolean;
  /** The migration was cancelled because no destination saw a volume's new space. */
  cancelled(drive: string, volume: string): void;
}

/**
 * The source side of a live migration (src/monitor/migration.ts): new space
 * is used here only once the destination announced that it sees it; when no
 * destination does in time, the migration is cancelled and the VM stays here.
 * A migration that ends while the source waits (cancelled by the
 * administrator, failed, completed) ends the wait at the next look at the job.
 */
export class OutgoingMigrationGate {
  constructor(private readonly options: OutgoingMigrationGateOptions) {}

  /** Whether new space must wait for a destination now (an outgoing migration runs). */
  async holdsNewSpace(): Promise<boolean> {
    return this.options.peers !== undefined && (await this.options.control.migratingOut());
  }

  /** Resolves once `volume`'s new size may be used here; rejects when the cancelled migration would not end. */
  async beforeUsingNewSpace(drive: string, volume: string, storageBytes: number): Promise<void> {
    const { peers, control, clock, logger } = this.options;
    if (!peers || !(await control.migratingOut())) return;
    const waitStarted = clock.now();
    // A migration that ends while the source waits has no destination left to announce anything:
    // waiting on would only let the guest run out of space here.
    const migrationEnded = new AbortController();
    void this.watchMigrationEnd(migrationEnded);
    try {
      const outcome = await peers.awaitDestinationView(volume, storageBytes, migrationEnded.signal);
      const waitedMs = clock.now() - waitStarted;
      if (outcome === 'announced') logger.info({ drive, volume, volumeBytes: storageBytes, waitedMs }, 'migration destination sees the new space; using it here');
      else logger.info({ drive, volume, volumeBytes: storageBytes, waitedMs }, 'the migration ended while its destination was awaited; using the new space here');
      return;
    } catch (error) {
      if (errorCode(error) !== 'destination-view-stale') throw error;
      // Ended meanwhile: completed (the VM left before it used the space) or failed (nothing to wait for).
      if (!(await control.migratingOut())) return;
      logger.error({ drive, volume, volumeBytes: storageBytes, err: errorMessage(error) }, MIGRATION_CANCELLED_MESSAGE);
      await control.cancelMigration();
    } finally {
      migrationEnded.abort();
    }
    const deadline = clock.now() + CANCEL_WAIT_MS;
    while (await control.migratingOut()) {
      if (clock.now() >= deadline) throw new Error(`the migration of ${this.options.vm} did not end within ${CANCEL_WAIT_MS} ms of its cancel; the new space stays unused here until it does`);
      await sleep(clock, CANCEL_POLL_MS);
    }
    this.options.cancelled(drive, volume);
  }

  /** Aborts `ended` once the outgoing migration is over; returns at its next look once the caller aborted it, having finished waiting. */
  private async watchMigrationEnd(ended: AbortController): Promise<void> {
    while (!ended.signal.aborted && !this.options.stopped()) {
      await sleep(this.options.clock, MIGRATION_END_CHECK_MS);
      if (ended.signal.aborted) return;
      const migrating = await this.options.control.migratingOut().catch(() => true);
      if (!migrating) ended.abort();
    }
  }
}
