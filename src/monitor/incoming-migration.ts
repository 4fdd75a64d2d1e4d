import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';
import type { DriveState } from './drive-state.js';
import { DEFAULT_INCOMING_REFRESH_MS, POST_COPY_MESSAGE, type MigrationPhase } from './migration.js';
import type { Extender, MigrationPeers } from './ports.js';

export interface IncomingMigrationOptions {
  /** The VM's drives now (they may change while it migrates in). */
  drives(): DriveState[];
  extender: Extender;
  /** Absent where no mailbox is shared: nothing is announced. */
  peers?: MigrationPeers;
  logger: Logger;
  changed(): void;
  /** How often volumes are refreshed while the VM migrates in. */
  refreshMs?: number;
}

/**
 * The destination side of a live migration (src/monitor/migration.ts): while
 * the VM migrates in, this host keeps its view of every volume current and
 * announces it through its inventory, since the source uses new space only
 * once the destination sees it. Also a VM libvirt is still starting
 * ("paused (starting up)") is announced, in case it turns out to be an
 * arrival nobody told this host about; the announcement is withdrawn once it
 * runs. The arrival itself (arming every threshold) is the VM monitor's.
 */
export class IncomingMigration {
  phase: MigrationPhase | undefined;
  /** The VM runs here while its memory still comes from the source (post-copy); still incoming until the migration ends. */
  postCopy = false;
  /** Views announced while QEMU was still starting here; withdrawn once it runs, unless it turned out to migrate in. */
  private announcedWhileStarting = false;
  readonly refreshMs: number;

  constructor(private readonly options: IncomingMigrationOptions) {
    this.refreshMs = options.refreshMs ?? DEFAULT_INCOMING_REFRESH_MS;
  }

  get incoming(): boolean {
    return this.phase === 'incoming';
  }

  /** Views are announced now, and must be refreshed on cadence whatever else a poll meets. */
  get announcing(): boolean {
    return this.incoming || this.announcedWhileStarting;
  }

  /** The VM migrates in; true when this is news. */
  enter(): boolean {
    if (this.incoming) return false;
    this.phase = 'incoming';
    this.options.logger.info({ drives: this.options.drives().map((drive) => drive.name) }, 'VM is migrating in: keeping its volumes refreshed until it runs here');
    this.options.changed();
    return true;
  }

  /** The VM runs here now: no longer incoming (the caller arms, refreshes and withdraws). */
  arrived(): void {
    this.phase = undefined;
    this.postCopy = false;
  }

  /** The VM started running here before the migration ended (post-copy); true when this is news. */
  enterPostCopy(): boolean {
    if (this.postCopy) return false;
    this.postCopy = true;
    this.options.logger.info({ drives: this.options.drives().map((drive) => drive.name) }, POST_COPY_MESSAGE);
    this.options.changed();
    return true;
  }

  /** The VM migrated away from this host. */
  left(): void {
    this.phase = 'left';
  }

  /** The VM is still being set up here: announce, in case it is an arrival nobody announced. */
  announceWhileStarting(): Promise<void> {
    this.announcedWhileStarting = true;
    return this.refreshViews(false);
  }

  /**
   * Makes this host see what the source's extensions gave every volume; arms
   * nothing (the source watches the writes). While the VM has not run here,
   * growth seen now cannot explain a write that found no space here, and the
   * view is announced.
   */
  async refreshViews(guestRanHere: boolean): Promise<void> {
    const { extender, peers, logger } = this.options;
    await Promise.all(
      this.options.drives().map(async (state) => {
        const visible = await extender.refresh(state.config.volume);
        if (state.sawVolumeBytes(visible)) logger.info({ drive: state.name, volume: state.config.volume, volumeBytes: visible }, 'volume grew on another host; refreshed');
        if (!guestRanHere) {
          state.grewUnseen = false;
          // The source uses new space only once this is published.
          await peers?.announceIncomingView(state.config.volume, visible);
        }
      }),
    );
  }

  async withdraw(): Promise<void> {
    this.announcedWhileStarting = false;
    const { peers, logger } = this.options;
    if (!peers) return;
    await Promise.all(this.options.drives().map((state) => peers.announceIncomingView(state.config.volume, undefined))).catch((error: unknown) =>
      logger.warn({ err: errorMessage(error) }, 'could not withdraw the incoming views of this VM from the inventory; the next inventory write does'),
    );
  }
}
