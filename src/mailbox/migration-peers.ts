import type { Logger } from 'pino';
import { DEFAULT_DESTINATION_WAIT_MS } from '../monitor/migration.js';
import { DestinationViewStaleError } from '../monitor/errors.js';
import type { DestinationWait, MigrationPeers } from '../monitor/ports.js';
import { sleep, type Clock } from '../util/clock.js';
import { incomingView } from './inventory.js';
import type { InventoryPublisher } from './inventory-publisher.js';
import type { Mailbox } from './mailbox.js';

/** How often the source reads the inventories while it waits: one read of every host's block. */
const INVENTORY_POLL_MS = 50;

/**
 * The two hosts of a live migration talk through the shared storage, as
 * every host already does with the SPM: the destination announces, in its
 * inventory block, the size it sees each incoming volume at; the source reads
 * the other hosts' inventories until one covers the new space
 * (src/monitor/migration.ts).
 */
export class MailboxMigrationPeers implements MigrationPeers {
  constructor(
    private readonly options: { mailbox: Mailbox; hostId: number; publisher: InventoryPublisher; clock: Clock; logger: Logger; waitMs?: number },
  ) {}

  announceIncomingView(volume: string, viewBytes: number | undefined): Promise<void> {
    return this.options.publisher.setIncomingView(volume, viewBytes);
  }

  async awaitDestinationView(volume: string, bytes: number, signal: AbortSignal): Promise<DestinationWait> {
    const { mailbox, hostId, clock, logger } = this.options;
    const waitMs = this.options.waitMs ?? DEFAULT_DESTINATION_WAIT_MS;
    const started = clock.now();
    let lastView: { hostId: number; viewBytes: number } | undefined;
    for (;;) {
      if (signal.aborted) return 'abandoned';
      for (const [otherHost, inventory] of await mailbox.readInventories()) {
        if (otherHost === hostId || inventory.kind !== 'valid') continue;
        const view = incomingView(inventory.value, volume);
        if (view !== undefined) lastView = { hostId: otherHost, viewBytes: view };
        if (view !== undefined && view >= bytes) {
          logger.debug({ volume, bytes, destinationHostId: otherHost, viewBytes: view, waitedMs: clock.now() - started }, 'migration destination sees the volume at its new size');
          return 'announced';
        }
      }
      if (clock.now() - started >= waitMs) throw new DestinationViewStaleError(volume, bytes, waitMs, lastView);
      await sleep(clock, INVENTORY_POLL_MS);
    }
  }
}
