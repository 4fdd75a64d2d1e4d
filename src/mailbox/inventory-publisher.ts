import type { Logger } from 'pino';
import type { StoragePlugin } from '../../plugins/types.js';
import { errorMessage } from '../errors.js';
import type { Clock, TimerHandle } from '../util/clock.js';
import { MAX_INCOMING_VIEWS } from './inventory.js';
import type { Mailbox } from './mailbox.js';

/**
 * Keeps this host's inventory block current: every `intervalMs` it lists the
 * volumes active here and writes them with the next heartbeat, so the SPM
 * never deletes or shrinks a volume a VM on this host may have open. Written
 * at start too, which clears what a crashed agent or a rebooted host left.
 */
export const INVENTORY_INTERVAL_MS = 5_000;

export class InventoryPublisher {
  private heartbeat = 0;
  /** Volume -> bytes this host sees, for VMs migrating in here (src/mailbox/inventory.ts). */
  private readonly incomingViews = new Map<string, number>();
  private timer: TimerHandle | undefined;
  private running: Promise<void> = Promise.resolve();
  private failing = false;
  private queued = false;
  private stopped = false;

  constructor(
    private readonly options: { mailbox: Mailbox; hostId: number; plugin: StoragePlugin; clock: Clock; logger: Logger; intervalMs?: number },
  ) {}

  /** Publishes once (resolves when written or failed), then keeps publishing. */
  async start(): Promise<void> {
    this.stopped = false;
    await this.publishNow();
  }

  /** Publishes at once: after this host activated or deactivated something, the SPM should not wait for the next round. */
  publishNow(): Promise<void> {
    // Rounds already queued publish the current state when they run; one more adds nothing.
    if (this.queued) return this.running;
    this.queued = true;
    this.running = this.running.then(() => {
      this.queued = false;
      return this.publish();
    });
    return this.running;
  }

  /**
   * This host's view of a volume whose VM migrates in (undefined: no longer);
   * published at once when it changed, since the source waits for it.
   */
  async setIncomingView(volume: string, viewBytes: number | undefined): Promise<void> {
    if (this.incomingViews.get(volume) === viewBytes) return this.running;
    if (viewBytes === undefined) this.incomingViews.delete(volume);
    else this.incomingViews.set(volume, viewBytes);
    return this.publishNow();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    await this.running;
  }

  private async publish(): Promise<void> {
    if (this.stopped) return;
    this.timer?.cancel();
    const { mailbox, hostId, plugin, logger } = this.options;
    try {
      const active = await plugin.activeVolumes();
      this.heartbeat += 1;
      // Past what a block holds, a view is left out: its source then cancels the migration rather than wait.
      const views = new Map([...this.incomingViews].slice(0, MAX_INCOMING_VIEWS));
      await mailbox.writeInventory(hostId, active, this.heartbeat, views);
      if (this.failing) logger.info({ hostId, volumes: active.length }, 'inventory published again');
      this.failing = false;
    } catch (error) {
      // The last good inventory stays on the storage; what was activated since is not protected until this works again.
      if (!this.failing) logger.error({ hostId, err: errorMessage(error) }, 'cannot publish the inventory of active volumes: the SPM cannot see volumes activated here since; retrying');
      this.failing = true;
    }
    if (!this.stopped) this.timer = this.options.clock.setTimeout(() => void this.publishNow(), this.options.intervalMs ?? INVENTORY_INTERVAL_MS);
  }
}
