import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';
import type { ListenAddress } from '../config/listen-address.js';
import { DoorbellListener } from '../doorbell/doorbell.js';
import { formatAddress } from '../util/address-text.js';
import type { SpmNotice } from '../mailbox/format.js';
import type { Mailbox } from '../mailbox/mailbox.js';
import { sleep } from '../util/clock.js';
import type { SpmMetrics } from './spm-metrics.js';
import { quietLooks, SpmService, type SpmOptions } from './spm-service.js';

/**
 * The doorbell for this term, or undefined (said as an error) when its address
 * cannot be bound: the SPM then serves as without one, looking at the
 * wake-up block every 30 ms, so nothing waits longer than that.
 */
async function listenForRings(address: ListenAddress, mailbox: Mailbox, logger: Logger, onRing: (hostId: number) => void): Promise<DoorbellListener | undefined> {
  try {
    const listener = await DoorbellListener.listen(address, { mailboxId: mailbox.header.mailboxId, maxHosts: mailbox.maxHosts, logger, onRing });
    logger.info({ doorbell: formatAddress(listener.address) }, 'listening for doorbell rings');
    return listener;
  } catch (error) {
    logger.error({ err: errorMessage(error) }, 'no doorbell this term; looking at the wake-up block every 30 ms instead');
    return undefined;
  }
}

/** What this term's SPM tells the hosts in their reply slots: who it is, and where to ring it if they can. */
function noticeFor(hostId: number, doorbell: DoorbellListener | undefined, logger: Logger): SpmNotice {
  const reachable = doorbell?.reachableAddress;
  if (doorbell && !reachable) logger.warn({ doorbell: formatAddress(doorbell.address) }, "the doorbell listens on a wildcard address, which the hosts cannot ring: they ring only what spm-doorbells lists; set 'doorbell' to an address of this host the others reach");
  return reachable ? { hostId, doorbell: reachable } : { hostId };
}

/** Logged when the SPM stops serving because its lease is gone (tests count it). */
export const LEASE_LOST_MESSAGE = 'SPM lease lost: stopped serving requests';

/**
 * `tideline spm`: waits for the lease, serves while holding it, goes back to
 * waiting when it is lost. Every term starts from the reply slots, never from
 * memory of an earlier term.
 */
export interface SpmDaemonOptions extends Pick<SpmOptions, 'mailbox' | 'plugin' | 'lease' | 'clock' | 'logger' | 'run' | 'requestDelayMs'> {
  signal: AbortSignal;
  /** This host's id: the SPM names itself with it in the reply slots it writes. */
  hostId: number;
  metrics?: SpmMetrics;
  /** Where this host's SPM listens for the hosts' doorbell rings while it serves (tideline.conf: doorbell). */
  doorbell?: ListenAddress;
  onService?: (service: SpmService) => void;
}

export async function runSpm(options: SpmDaemonOptions): Promise<void> {
  const { lease, logger, signal } = options;
  while (!signal.aborted) {
    logger.info('waiting for the SPM lease');
    try {
      await lease.acquire(signal);
    } catch (error) {
      if (signal.aborted) break;
      logger.error({ err: errorMessage(error) }, 'lease acquisition failed; retrying');
      await sleep(options.clock, 1_000);
      continue;
    }
    logger.info('acting as SPM');
    let service: SpmService | undefined;
    // Only the serving SPM listens: a standby's socket would take rings nobody acts on.
    const doorbell = options.doorbell ? await listenForRings(options.doorbell, options.mailbox, logger, (hostId) => service?.ring(hostId)) : undefined;
    service = new SpmService({ ...options, ...quietLooks(doorbell !== undefined), notice: noticeFor(options.hostId, doorbell, logger) });
    options.metrics?.observe(service, doorbell);
    options.metrics?.setActing(true);
    options.onService?.(service);
    let outcome: 'stopped' | 'lease-lost';
    try {
      outcome = await service.serve(signal);
    } catch (error) {
      logger.error({ err: errorMessage(error) }, 'SPM service failed; giving the lease up');
      await lease.release();
      continue;
    } finally {
      options.metrics?.setActing(false);
      await doorbell?.close();
    }
    if (outcome === 'lease-lost') logger.error(LEASE_LOST_MESSAGE);
  }
  await lease.close();
  logger.info('SPM stopped; lease released');
}
