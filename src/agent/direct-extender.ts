import type { Extender } from '../monitor/ports.js';
import type { StoragePlugin } from '../../plugins/types.js';
import { sleep, type Clock } from '../util/clock.js';

/**
 * Extends through the storage plugin on this host. Right for the lab and for
 * file or single-host storage; on a shared VG only the SPM may change LVM
 * metadata, and the mailbox extender takes this one's place.
 */
export class DirectExtender implements Extender {
  constructor(
    private readonly plugin: StoragePlugin,
    private readonly options: { clock?: Clock; delayMs?: number } = {},
  ) {}

  async extend(volume: string, targetBytes: number): Promise<number> {
    // The delay stands for a slow SPM; the lab and tests use it to force the ENOSPC path.
    if (this.options.delayMs && this.options.clock) await sleep(this.options.clock, this.options.delayMs);
    return (await this.plugin.extend(volume, targetBytes)).sizeBytes;
  }

  refresh(volume: string): Promise<number> {
    return this.plugin.refresh(volume);
  }
}
