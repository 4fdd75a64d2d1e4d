import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';
import type { DriveState } from './drive-state.js';
import type { DriveCapacity } from './ports.js';

/**
 * A drive's cap follows its image (an administrator's blockresize sends no
 * event): a drive within a chunk of its cap asks its image at each safety
 * poll, and a write refused at the cap asks once more, so the cap grows
 * before the guest meets the old one. Without a DriveCapacity the cap is the
 * one configured.
 */
export class CapFollower {
  constructor(
    private readonly capacity: DriveCapacity | undefined,
    private readonly logger: Logger,
    private readonly changed: () => void,
  ) {}

  /** The safety poll's look: every drive near its cap asks its image. */
  async followNearCap(drives: readonly DriveState[]): Promise<void> {
    await Promise.all(drives.map(async (state) => (state.volumeBytes + state.policy.chunk() >= state.config.capBytes ? this.grew(state) : false)));
  }

  /** Asks the drive's image for its cap now; true when it grew (and the drive follows it). */
  async grew(state: DriveState): Promise<boolean> {
    if (!this.capacity) return false;
    let capBytes: number;
    try {
      capBytes = await this.capacity.capBytes(state.config);
    } catch (error) {
      this.logger.warn({ drive: state.name, volume: state.config.volume, err: errorMessage(error) }, "cannot read the drive's image to see whether it grew; keeping its cap");
      return false;
    }
    if (capBytes <= state.config.capBytes) return false;
    this.logger.info({ drive: state.name, volume: state.config.volume, fromCapBytes: state.config.capBytes, capBytes }, "the drive's image grew (virtual size): its cap follows");
    state.reconfigure({ ...state.config, capBytes });
    this.changed();
    return true;
  }
}
