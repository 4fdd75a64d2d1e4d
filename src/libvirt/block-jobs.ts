import type { StoragePlugin } from '../../plugins/types.js';
import type { DomainDisk } from './domain-xml.js';

/**
 * Block jobs an administrator runs with virsh (blockpull, blockcommit,
 * blockcopy) change a disk's backing chain without asking the SPM, whose
 * records (each volume's parent tag) must then follow the images. libvirt
 * says a job ended in its block-job-2 event, which names the disk by target.
 */

const COMPLETED = /^(.+) for (\S+) completed$/;

/** The job and disk of a block-job-2 event's detail ("Block Pull for vda completed"), when it completed; pure. */
export function completedBlockJob(detail: string): { job: string; target: string } | undefined {
  const match = COMPLETED.exec(detail);
  return match ? { job: match[1]!, target: match[2]! } : undefined;
}

/** The volumes of this storage domain in a disk's chain, top down, as its live XML gives them. */
export async function chainVolumes(disk: DomainDisk, plugin: StoragePlugin): Promise<string[]> {
  const volumes: string[] = [];
  for (const source of [disk.source, ...disk.backingChain.map((layer) => layer.source)]) {
    if (source === undefined) continue;
    const volume = await plugin.volumeForPath(source);
    if (volume !== undefined) volumes.push(volume);
  }
  return volumes;
}
