import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';
import type { DriveState } from './drive-state.js';
import { DEFAULT_INCOMING_REFRESH_MS, migrationPhase, POST_COPY_MESSAGE, POST_COPY_PAUSE_MESSAGE, type MigrationPhase } from './migration.js';
import type { Extender, MigrationPeers, RunState } from './ports.js';

/** What an arrival needs from the VM's drive loop (VmMonitor). */
export interface DriveLoop {
  /** The drive decides again (arm, extend), in the background. */
  step(drive: DriveState): void;
  /** Every drive decides again; resolves once each has done what it decided. */
  stepAll(): Promise<void>;
  /** Every threshold forgotten and armed again; resolves once libvirt or QEMU answered each. */
  armAll(): Promise<void>;
  /** An I/O error pause after writes nobody saw: every active layer counts as written to its end and is given room, then the VM resumed. */
  takeOverPauseOfUnknownWrites(message: string): void;
  pausedForNoSpace(): boolean;
  resumeWhenReady(): Promise<void>;
  runState(): Promise<RunState>;
  now(): number;
  /** Runs here now, every threshold armed `armedMs` after it started running. */
  arrived(armedMs: number): void;
}

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
  loop: DriveLoop;
}

/**
 * The destination side of a live migration (src/monitor/migration.ts): while
 * the VM migrates in, this host keeps its view of every volume current and
 * announces it through its inventory, since the source uses new space only
 * once the destination sees it. Also a VM libvirt is still starting
 * ("paused (starting up)") is announced, in case it turns out to be an
 * arrival nobody told this host about; the announcement is withdrawn once it
 * runs. Once the VM runs here (or in post-copy, runs before the migration
 * ended) the drive loop is told what to arm and extend.
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

  /**
   * What a poll of the VM's run state means for this side of a migration:
   * `wait` while the VM is not watched as usual yet (views refreshed and
   * announced instead), `arrived` once it runs here after a migration and
   * every threshold is armed, `watch` otherwise. In post-copy the VM runs
   * here before the migration ends, and is armed only once that ends.
   */
  async polled(runState: RunState): Promise<'wait' | 'arrived' | 'watch'> {
    if (this.incoming) {
      // Once it runs here (its RESUME event missed, or it came before we attached), the thresholds are armed.
      if (runState === 'postcopy' || (runState === 'io-error' && this.postCopy)) {
        await this.runInPostCopy(runState);
        return 'wait';
      }
      if (!ranHere(runState)) return 'wait';
      await this.arrive(this.options.loop.now());
      return 'arrived';
    }
    if (migrationPhase(runState) === 'incoming') {
      this.enter();
      await this.refreshViews(false);
      return 'wait';
    }
    if (runState === 'starting') {
      // Nothing can be asked yet, and it may be a live migration arriving that nobody announced to this host
      // (measured: 0.6 s from libvirt's `start` hook to "paused (migrating)"). Announce the views now: the
      // source's extensions wait for them, and QEMU opens the devices at the size this host sees.
      await this.announceWhileStarting();
      return 'wait';
    }
    if (this.announcing) await this.withdraw();
    return 'watch';
  }

  /** The VM resumed while migrating in: arrived, or in post-copy (the migration still under way), which only libvirt's state tells apart. */
  async resumed(resumedAt: number): Promise<void> {
    const runState = await this.options.loop.runState().catch(() => undefined);
    if (runState === 'postcopy') await this.runInPostCopy(runState);
    else await this.arrive(resumedAt);
  }

  /**
   * The VM runs here while the post-copy migration still pulls its memory
   * from the source (src/monitor/migration.ts): every active drive counts as
   * written to its end, so each gets its free target at once; a pause for
   * lack of space is extended and its resume tried at every poll, which
   * libvirt allows once the migration ended.
   */
  private async runInPostCopy(runState: RunState): Promise<void> {
    const { loop, logger } = this.options;
    if (!this.postCopy) {
      this.postCopy = true;
      logger.info({ drives: this.options.drives().map((drive) => drive.name) }, POST_COPY_MESSAGE);
      this.options.changed();
      for (const drive of this.options.drives().filter((candidate) => candidate.isActiveLayer)) {
        drive.assumeWrittenToEnd();
        loop.step(drive);
      }
    }
    if (runState !== 'io-error') return;
    // Its io-error event was missed: what the guest wrote since the post-copy began is unknown.
    if (!loop.pausedForNoSpace()) loop.takeOverPauseOfUnknownWrites(POST_COPY_PAUSE_MESSAGE);
    await loop.resumeWhenReady();
  }

  /** The VM runs here after a live migration: refresh once more, arm every threshold at once. */
  private async arrive(resumedAt: number): Promise<void> {
    if (!this.incoming) return;
    const { loop, logger } = this.options;
    this.phase = undefined;
    this.postCopy = false;
    // Armed first, against the view the incoming refreshes kept (at most one
    // refresh interval old): a threshold a little low fires early, never late.
    await loop.armAll();
    const armedMs = loop.now() - resumedAt;
    try {
      await this.refreshViews(true);
    } catch (error) {
      logger.warn({ err: errorMessage(error) }, 'refresh after migration failed; the thresholds below the old size still guard the drives');
    }
    await this.withdraw();
    // A view that grew in the meantime raises the thresholds.
    await loop.stepAll();
    logger.info({ armedMs, drives: this.options.drives().map((drive) => drive.status()) }, 'VM arrived by live migration: volumes refreshed, thresholds armed');
    loop.arrived(armedMs);
  }

  /** The VM migrated away from this host. */
  left(): void {
    this.phase = 'left';
  }

  /** The VM is still being set up here: announce, in case it is an arrival nobody announced. */
  private announceWhileStarting(): Promise<void> {
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

/** A VM migrating in has run here once it runs, or paused for an I/O error (a write met this host's view). */
function ranHere(runState: RunState): boolean {
  return runState === 'running' || runState === 'io-error';
}
