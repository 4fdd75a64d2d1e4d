import type { Logger } from 'pino';
import type { StoragePlugin } from '../../plugins/types.js';
import { errorMessage } from '../errors.js';
import type { Lease } from '../lease/types.js';
import type { Mailbox } from '../mailbox/mailbox.js';
import { sleep, type Clock } from '../util/clock.js';
import type { Runner } from '../util/runner.js';
import type { SpmMetrics } from './spm-metrics.js';
import { SpmService } from './spm-service.js';

/** Logged when the SPM stops serving because its lease is gone (tests count it). */
export const LEASE_LOST_MESSAGE = 'SPM lease lost: stopped serving requests';

/**
 * `tideline spm`: waits for the lease, serves while holding it, goes back to
 * waiting when it is lost. Every term starts from the reply slots, never from
 * memory of an earlier term.
 */
export async function runSpm(options: { mailbox: Mailbox; plugin: StoragePlugin; lease: Lease; clock: Clock; logger: Logger; run: Runner; signal: AbortSignal; requestDelayMs?: number; metrics?: SpmMetrics; onService?: (service: SpmService) => void }): Promise<void> {
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
    const service = new SpmService({ ...options, wakeUpThread: true });
    options.metrics?.observe(service);
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
    }
    if (outcome === 'lease-lost') logger.error(LEASE_LOST_MESSAGE);
  }
  await lease.close();
  logger.info('SPM stopped; lease released');
}
