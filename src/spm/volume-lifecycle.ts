import type { StoragePlugin, VolumeInfo } from '../../plugins/types.js';
import { TideError } from '../errors.js';
import type { Runner } from '../util/runner.js';
import { VIRTUAL_SIZE_TAG } from './validate.js';

/**
 * Creating and deleting thin volumes on the SPM. A new volume gets its qcow2
 * header at once, so it is usable the moment the reply arrives; a deleted
 * volume is zeroed before its space goes back to the domain, so the next
 * volume carved from it cannot read a former guest's data (as oVirt does).
 */
export class VolumeInUseError extends TideError {
  readonly code = 'volume-in-use';
}

const QEMU_IMG_TIMEOUT_MS = 60_000;
/** Zeroing is proportional to the volume's size; big LVs take minutes. */
const ZERO_TIMEOUT_MS = 30 * 60_000;

export async function createThinVolume(plugin: StoragePlugin, run: Runner, volume: string, initialBytes: number, virtualBytes: number, tags: Record<string, string> = {}): Promise<VolumeInfo> {
  const created = await plugin.create(volume, initialBytes, { ...tags, [VIRTUAL_SIZE_TAG]: String(virtualBytes) });
  try {
    const device = await plugin.activate(volume);
    try {
      await run('qemu-img', ['create', '-q', '-f', 'qcow2', device, String(virtualBytes)], { timeoutMs: QEMU_IMG_TIMEOUT_MS });
    } finally {
      await plugin.deactivate(volume);
    }
  } catch (error) {
    // A volume without its qcow2 header is of no use to anyone: do not leave it behind.
    await plugin.remove(volume).catch(() => undefined);
    throw error;
  }
  return created;
}

export async function deleteThinVolume(plugin: StoragePlugin, run: Runner, volume: string): Promise<void> {
  await plugin.describe(volume);
  // Active here means a VM (or an admin) may be using it: zeroing it would destroy live data.
  if (await plugin.isActive(volume)) throw new VolumeInUseError(`volume ${volume} is active on this host; stop the VM using it and deactivate it before deleting`);
  const device = await plugin.activate(volume);
  try {
    await run('blkdiscard', ['--zeroout', device], { timeoutMs: ZERO_TIMEOUT_MS });
  } finally {
    await plugin.deactivate(volume);
  }
  await plugin.remove(volume);
}
