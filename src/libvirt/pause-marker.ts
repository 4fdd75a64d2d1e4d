import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';
import type { Virsh } from './virsh.js';

/**
 * Whether a domain is paused for lack of space, written into its live
 * metadata while it is. libvirt forgets why a domain was paused when it
 * saves it: restored, one paused for an I/O error is "paused (migrating)"
 * with no error on any disk, exactly as one an administrator had suspended
 * (measured with libvirt 9.0). The save file carries the live XML, so the
 * mark tells the restoring host (this one or another) that the pause is
 * tideline's to end.
 */
export const PAUSE_NAMESPACE = 'https://tideline.dev/xmlns/paused-for-space/1';
const PAUSE_KEY = 'tideline-pause';

export function pauseMarkXml(drives: readonly string[]): string {
  return `<paused-for-space drives="${drives.filter((drive) => /^[\w.@[\]-]+$/.test(drive)).join(' ')}"/>`;
}

/** True when the metadata element (as `virsh metadata` prints it) is the mark. */
export function isPauseMark(xml: string): boolean {
  return /<([\w-]+:)?paused-for-space\b/.test(xml);
}

/**
 * Keeps one domain's mark as the monitor says it should be. Changes are
 * applied one at a time, the last wish winning, so a pause that ends while
 * its mark is still being written never leaves the mark behind.
 */
export class PauseMarker {
  private wanted: string | undefined;
  private applied: string | undefined;
  private applying = false;

  constructor(
    private readonly virsh: Pick<Virsh, 'setLiveMetadata'>,
    private readonly domain: string,
    private readonly logger: Logger,
  ) {}

  mark(drives: readonly string[]): void {
    this.wanted = pauseMarkXml(drives);
    void this.apply();
  }

  clear(): void {
    this.wanted = undefined;
    void this.apply();
  }

  /** The domain was restored with the mark: it is on this QEMU until cleared. */
  found(xml: string): void {
    this.applied = xml;
    this.wanted = xml;
  }

  private async apply(): Promise<void> {
    if (this.applying) return;
    this.applying = true;
    try {
      while (this.wanted !== this.applied) {
        const wanted = this.wanted;
        try {
          await this.virsh.setLiveMetadata(this.domain, PAUSE_NAMESPACE, PAUSE_KEY, wanted);
          this.applied = wanted;
        } catch (error) {
          // Gone (stopped, migrated away) or libvirt busy: the mark lives only as long as this QEMU anyway.
          this.logger.warn({ vm: this.domain, err: errorMessage(error) }, 'could not record in the domain whether it is paused for lack of space; a restore of a save taken now may not resume it');
          return;
        }
      }
    } finally {
      this.applying = false;
    }
  }
}
