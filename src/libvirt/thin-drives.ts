import type { Logger } from 'pino';
import type { StoragePlugin } from '../../plugins/types.js';
import { errorMessage } from '../errors.js';
import { samePolicy, type DriveConfig } from '../monitor/drive-state.js';
import type { PolicySettings } from '../monitor/policy.js';
import { driveCapBytes, headerBitmapBytes } from '../monitor/qcow2-capacity.js';
import { readQcow2Header } from '../qcow2/header.js';
import { policyFor, type DomainDisk, type DomainInfo } from './domain-xml.js';

/**
 * A domain's thin drives as its live XML and their images say they are now:
 * what the agent reconciles its watch against (libvirt-agent.ts). The XML
 * names the disks, their active layers and policy; each image's header names
 * its virtual size, hence the cap. Nothing is remembered from earlier reads.
 */
export interface ThinDrive {
  target: string;
  /** libvirt's index of the active layer ("vda[1]"), when its XML gives one. */
  index: number | undefined;
  /** The active layer's path on this host. */
  source: string;
  config: DriveConfig;
  /** The per-disk limit from the domain's metadata, below the image's own cap. */
  maxSizeBytes: number | undefined;
}

export interface ThinDriveContext {
  plugin: StoragePlugin;
  policy: PolicySettings;
  maxSizeBytes?: number;
  logger: Logger;
  /** Asked when the header cannot be read (a destination of a migration answers no block query, so the header comes first). */
  capacityFromLibvirt(target: string): Promise<number>;
}

/** Every disk of the domain on this host's storage domain that tideline thin-provisions, by target. */
export async function deriveThinDrives(domain: string, info: DomainInfo, context: ThinDriveContext, quiet: ReadonlySet<string> = new Set()): Promise<Map<string, ThinDrive>> {
  const { plugin, logger } = context;
  const drives = new Map<string, ThinDrive>();
  for (const disk of info.disks) {
    if (disk.device !== 'disk' || !disk.source) continue;
    const volume = await plugin.volumeForPath(disk.source);
    if (!volume) continue;
    // Said once per drive, when the agent first meets it, not at every reconcile.
    const say = !quiet.has(disk.target);
    const policy = policyFor(info, disk.target);
    if (policy.enabled === false) {
      if (say) logger.info({ vm: domain, drive: disk.target, volume }, 'thin provisioning disabled for this disk by domain metadata');
      continue;
    }
    if (disk.format !== 'qcow2') {
      if (say) logger.info({ vm: domain, drive: disk.target, volume, format: disk.format }, 'disk on a tideline volume is not qcow2: nothing to thin-provision');
      continue;
    }
    if (disk.errorPolicy !== 'stop' && say) {
      logger.error({ vm: domain, drive: disk.target, volume, errorPolicy: disk.errorPolicy ?? 'report' }, "thin disk without error_policy='stop': a write that finds no space fails in the guest instead of pausing the VM; set error_policy='stop'");
    }
    const maxSizeBytes = policy.maxSize ?? context.maxSizeBytes;
    const capBytes = await imageCapBytes(disk.source, plugin.extentBytes, maxSizeBytes).catch(async (error: unknown) => {
      logger.warn({ vm: domain, drive: disk.target, err: errorMessage(error) }, "cannot read the disk's qcow2 header; asking libvirt for its size");
      return driveCapBytes(await context.capacityFromLibvirt(disk.target), undefined, plugin.extentBytes, maxSizeBytes, 0);
    });
    const drivePolicy: PolicySettings = { ...context.policy, ...(policy.chunk ? { chunkBytes: policy.chunk } : {}), ...(policy.freeTarget ? { freeTargetBytes: policy.freeTarget } : {}) };
    drives.set(disk.target, { target: disk.target, index: disk.index, source: disk.source, config: { drive: disk.target, volume, capBytes, policy: drivePolicy }, maxSizeBytes });
    for (const layer of await backingLayers(disk, context, drivePolicy, maxSizeBytes)) drives.set(layer.target, layer);
    const copy = await copyTarget(disk, context, drivePolicy, maxSizeBytes);
    if (copy) drives.set(copy.target, copy);
  }
  return drives;
}

const COPY_SUFFIX = '@copy';

/** How a disk's copy target (`virsh blockcopy`) is named among the drives: libvirt gives it no name of its own. */
export function copyTargetName(target: string): string {
  return `${target}${COPY_SUFFIX}`;
}

export function isCopyTargetName(drive: string): boolean {
  return drive.endsWith(COPY_SUFFIX);
}

/**
 * The target of a block copy of the disk (`virsh blockcopy --reuse-external`
 * onto a volume of this storage domain), while the job runs: kept at least
 * as large as the disk it copies (DriveConfig.replicaOf). After the pivot it
 * is the disk's active layer and watched as such.
 */
async function copyTarget(disk: DomainDisk, context: ThinDriveContext, policy: PolicySettings, maxSizeBytes: number | undefined): Promise<ThinDrive | undefined> {
  if (disk.mirror?.job !== 'copy' || disk.mirror.source === undefined) return undefined;
  const volume = await context.plugin.volumeForPath(disk.mirror.source);
  if (!volume) return undefined;
  const target = copyTargetName(disk.target);
  try {
    const capBytes = await imageCapBytes(disk.mirror.source, context.plugin.extentBytes, maxSizeBytes);
    return { target, index: undefined, source: disk.mirror.source, config: { drive: target, volume, capBytes, policy, replicaOf: disk.target }, maxSizeBytes };
  } catch (error) {
    context.logger.warn({ drive: target, volume, err: errorMessage(error) }, "cannot read a block copy target's qcow2 header: it is not kept as large as its disk");
    return undefined;
  }
}

/**
 * The layers under a disk's active one that are volumes of this storage
 * domain, each a drive of its own named as libvirt names it (`vda[2]`).
 * Nothing writes them but a block job an administrator starts (`virsh
 * blockcommit` merges into one), and libvirt says nothing when such a job
 * starts; a threshold armed on every layer in advance is what sees the job's
 * first writes, so the layer is extended ahead of it as the active one is
 * ahead of the guest.
 */
async function backingLayers(disk: DomainDisk, context: ThinDriveContext, policy: PolicySettings, maxSizeBytes: number | undefined): Promise<ThinDrive[]> {
  const layers: ThinDrive[] = [];
  for (const layer of disk.backingChain) {
    if (layer.source === undefined || layer.index === undefined) continue;
    const volume = await context.plugin.volumeForPath(layer.source);
    if (!volume) continue;
    const target = `${disk.target}[${layer.index}]`;
    let capBytes: number;
    try {
      capBytes = await imageCapBytes(layer.source, context.plugin.extentBytes, maxSizeBytes);
    } catch (error) {
      context.logger.warn({ drive: target, volume, err: errorMessage(error) }, "cannot read a backing layer's qcow2 header: the layer is not watched");
      continue;
    }
    layers.push({ target, index: undefined, source: layer.source, config: { drive: target, volume, capBytes, policy, backingLayer: true }, maxSizeBytes });
  }
  return layers;
}

/**
 * The cap an image gives its volume: its virtual size fully allocated (with
 * its bitmaps), within the limit. Read from the image's own header, which
 * every host and the SPM can read, so it follows a `blockresize` at once.
 */
export async function imageCapBytes(source: string, extentBytes: number, limitBytes: number | undefined): Promise<number> {
  const header = await readQcow2Header(source);
  return driveCapBytes(header.virtualBytes, header.clusterBytes, extentBytes, limitBytes, headerBitmapBytes(header));
}

/** Whether two drive configurations would decide alike (the volume is compared by the caller). */
export function sameDriveSettings(a: DriveConfig, b: DriveConfig): boolean {
  return a.capBytes === b.capBytes && a.backingLayer === b.backingLayer && a.replicaOf === b.replicaOf && samePolicy(a.policy, b.policy);
}
