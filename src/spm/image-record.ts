import type { Logger } from 'pino';
import type { StoragePlugin, VolumeInfo } from '../../plugins/types.js';
import { errorMessage } from '../errors.js';
import { readQcow2Header, type Qcow2Header } from '../qcow2/header.js';
import { VIRTUAL_SIZE_TAG } from './validate.js';

/**
 * A volume's tags record what its qcow2 image says: its virtual size (the
 * cap) and its backing volume (the parent). The image is the truth and the
 * tags only its record: an administrator's `virsh blockresize` grows the
 * image, `virsh blockpull` or `qemu-img rebase` changes its backing file, and
 * neither touches a tag. What here reads an image is how the SPM brings the
 * record back to the truth.
 */

/** The tag naming a volume's backing volume; the qcow2 header names it too, by its backing path. */
export const PARENT_TAG = 'parent';

/**
 * The volume's qcow2 header now, read through this host's device of the
 * volume, activated for the read when it was not active here (and
 * deactivated again).
 */
export async function readImageHeader(plugin: StoragePlugin, volume: string): Promise<Qcow2Header> {
  const activePath = await plugin.activePath(volume);
  const device = activePath ?? (await plugin.activate(volume));
  try {
    return await readQcow2Header(device);
  } finally {
    if (activePath === undefined) await plugin.deactivate(volume).catch(() => undefined);
  }
}

/** The virtual size the volume's qcow2 header gives now. */
export async function imageVirtualBytes(plugin: StoragePlugin, volume: string): Promise<number> {
  return (await readImageHeader(plugin, volume)).virtualBytes;
}

/**
 * The volume with its recorded virtual size brought up to what its image
 * says now, when the image grew (an administrator's blockresize); never
 * lowered, since shrinking an image's virtual size is refused everywhere.
 * An unreadable header leaves the record as it is.
 */
export async function followImageSize(plugin: StoragePlugin, volume: VolumeInfo, logger: Logger): Promise<VolumeInfo> {
  let header: Qcow2Header;
  try {
    header = await readImageHeader(plugin, volume.name);
  } catch (error) {
    logger.warn({ volume: volume.name, err: errorMessage(error) }, "cannot read the volume's qcow2 header to see whether the image grew; its recorded virtual size stands");
    return volume;
  }
  return recordVirtualSize(plugin, volume, header.virtualBytes, logger);
}

async function recordVirtualSize(plugin: StoragePlugin, volume: VolumeInfo, virtualBytes: number, logger: Logger): Promise<VolumeInfo> {
  const recorded = Number(volume.tags[VIRTUAL_SIZE_TAG]);
  if (Number.isSafeInteger(recorded) && virtualBytes <= recorded) return volume;
  logger.info({ volume: volume.name, fromVirtualBytes: Number.isSafeInteger(recorded) ? recorded : null, virtualBytes }, "the volume's image grew (its header's virtual size): recording it, the cap follows");
  return plugin.setTag(volume.name, VIRTUAL_SIZE_TAG, String(virtualBytes));
}

/**
 * The volume whose image backs `volume`'s, by the backing file its header
 * names: null when it has none (pulled in full); undefined when the name is
 * not one this storage domain can read as a volume (said in the log), and
 * then the record is left as it is: a parent is never let go on a guess.
 */
async function backingVolume(plugin: StoragePlugin, volume: string, header: Qcow2Header, logger: Logger): Promise<string | null | undefined> {
  if (header.backingFile === undefined) return null;
  const parent = await plugin.volumeForPath(header.backingFile);
  if (parent === undefined) {
    logger.warn({ volume, backingFile: header.backingFile, storageDomain: plugin.domain }, "the volume's image names a backing file that is no volume of this storage domain: its parent record is left as it is");
  }
  return parent;
}

/**
 * Brings the whole record up to the image: a grown virtual size, and the
 * backing volume as the parent (none after a full `virsh blockpull`, the
 * base after one with `--base`). A header that cannot be read is an error:
 * the caller asked for the truth.
 */
export async function followImageRecord(plugin: StoragePlugin, name: string, logger: Logger): Promise<VolumeInfo> {
  const volume = await plugin.describe(name);
  const header = await readImageHeader(plugin, name);
  const sized = await recordVirtualSize(plugin, volume, header.virtualBytes, logger);
  const parent = await backingVolume(plugin, name, header, logger);
  const recorded = sized.tags[PARENT_TAG];
  if (parent === undefined || parent === (recorded ?? null)) return sized;
  if (parent !== null) await plugin.describe(parent);
  logger.info({ volume: name, fromParent: recorded ?? null, parent }, parent === null ? "the volume's image has no backing volume any more (block pull): its parent record is removed" : "the volume's image is backed by another volume now: recording it as its parent");
  return plugin.setTag(name, PARENT_TAG, parent ?? undefined);
}

/** Volumes whose parent tag names `volume` (the record alone: what a host that may not change tags can read). */
export async function taggedChildrenOf(plugin: StoragePlugin, volume: string): Promise<string[]> {
  return (await plugin.list()).filter((candidate) => candidate.tags[PARENT_TAG] === volume).map((candidate) => candidate.name);
}

/**
 * Volumes whose image is backed by `volume`: the tagged ones, each confirmed
 * by its image's header, so a tag left over from before a block pull is
 * brought up to the image instead of holding the parent for good. A header
 * that cannot be read keeps its tag's word. For the domain's one writer.
 */
export async function confirmedChildrenOf(plugin: StoragePlugin, volume: string, logger: Logger): Promise<string[]> {
  const children: string[] = [];
  for (const child of await taggedChildrenOf(plugin, volume)) {
    try {
      if ((await followImageRecord(plugin, child, logger)).tags[PARENT_TAG] === volume) children.push(child);
    } catch (error) {
      logger.warn({ volume: child, parent: volume, err: errorMessage(error) }, "cannot read a child's qcow2 header: its parent tag stands");
      children.push(child);
    }
  }
  return children;
}
