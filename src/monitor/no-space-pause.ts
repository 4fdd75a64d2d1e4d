import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';
import type { Clock } from '../util/clock.js';
import type { DriveState } from './drive-state.js';
import type { VmControl } from './ports.js';

export const RESTORED_PAUSED_MESSAGE = 'VM restored from a save taken while it was paused for lack of space: giving every drive room, then resuming it';

export interface NoSpacePauseOptions {
  clock: Clock;
  control: VmControl;
  logger: Logger;
  paused(drives: string[]): void;
  resumed(pausedMs: number): void;
  changed(): void;
}

/**
 * One VM's pause for lack of space, from the write that found none to the
 * resume once every drive got space: the only pause tideline ever ends.
 * Anything else that paused the VM (an admin, a migration, an EIO) is left
 * to whoever caused it.
 */
export class NoSpacePause {
  active = false;
  pauses = 0;
  lastResumeMs: number | undefined;
  private pausedAt = 0;
  private pausedMsTotal = 0;
  private resuming = false;

  constructor(private readonly options: NoSpacePauseOptions) {}

  /** Time spent paused for lack of space so far, the pause under way included. */
  pausedMs(): number {
    return this.pausedMsTotal + (this.active ? this.options.clock.now() - this.pausedAt : 0);
  }

  noted(drives: string[]): void {
    if (this.active) return;
    this.active = true;
    this.pausedAt = this.options.clock.now();
    this.pauses += 1;
    this.options.logger.warn({ drives }, 'VM paused: a write found no space; extending, then resuming');
    this.options.paused(drives);
    this.options.changed();
  }

  /** Someone else resumed the VM: a write that still has no space pauses it again. */
  resumedByOthers(): void {
    if (this.active && !this.resuming) this.end();
  }

  /** Resumes only what a lack of space paused, and only once every such drive got space. */
  async resumeWhenReady(drives: Iterable<DriveState>): Promise<void> {
    if (!this.active || this.resuming) return;
    for (const drive of drives) if (drive.noSpace || drive.extending) return;
    this.resuming = true;
    try {
      const runState = await this.options.control.runState();
      if (runState !== 'io-error') {
        // Resumed by someone else, or paused/stopped by a person on top: not ours to touch.
        this.options.logger.info({ runState }, 'VM no longer paused for an I/O error; not resuming');
        this.end();
        return;
      }
      await this.options.control.resume();
      const pausedMs = this.end();
      this.lastResumeMs = pausedMs;
      this.options.logger.info({ pausedMs }, 'VM resumed after extension');
      this.options.resumed(pausedMs);
    } catch (error) {
      this.options.logger.warn({ err: errorMessage(error) }, 'resume failed; retrying at the next poll');
    } finally {
      this.resuming = false;
    }
  }

  private end(): number {
    const pausedMs = this.options.clock.now() - this.pausedAt;
    this.active = false;
    this.pausedMsTotal += pausedMs;
    this.options.changed();
    return pausedMs;
  }
}
