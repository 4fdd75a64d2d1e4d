import { open, stat, truncate } from 'node:fs/promises';
import type { Logger } from 'pino';
import { TideError } from '../errors.js';
import { DirectBlockFile } from '../mailbox/direct-io.js';
import { BLOCK_BYTES } from '../mailbox/format.js';
import type { Clock } from '../util/clock.js';
import { StorageLease, type LeaseTiming } from './storage-lease.js';

export class LeaseVolumeError extends TideError {
  readonly code = 'lease-volume';
}

/** One expiry figure an admin can reason about; the other timings follow from it. */
export function timingForExpiry(expiryMs: number): LeaseTiming {
  return { renewMs: Math.round(expiryMs / 15), ioTimeoutMs: Math.round(expiryMs / 7.5), expiryMs, marginMs: Math.round((expiryMs * 4) / 15) };
}

/** Sizes a lease file (lab) for `maxHosts`; a block device (LV) must already be large enough. */
export async function initLeaseVolume(path: string, maxHosts: number): Promise<void> {
  const handle = await open(path, 'a');
  await handle.close();
  const info = await stat(path);
  if (info.isFile() && info.size < maxHosts * BLOCK_BYTES) await truncate(path, maxHosts * BLOCK_BYTES);
}

export async function openStorageLease(options: { path: string; hostId: number; maxHosts: number; timing: LeaseTiming; clock: Clock; logger: Logger }): Promise<StorageLease> {
  const info = await stat(options.path).catch((error: unknown) => {
    throw new LeaseVolumeError(`lease volume ${options.path} is missing; create it with 'tideline lease init ${options.path} --max-hosts N'`, { cause: error });
  });
  if (info.isFile() && info.size < options.maxHosts * BLOCK_BYTES) {
    throw new LeaseVolumeError(`lease volume ${options.path} holds ${Math.floor(info.size / BLOCK_BYTES)} host blocks, fewer than the ${options.maxHosts} hosts of the mailbox`);
  }
  const file = await DirectBlockFile.open(options.path, options.maxHosts * BLOCK_BYTES);
  return new StorageLease(file, options.hostId, options.maxHosts, options.timing, options.clock, options.logger);
}
