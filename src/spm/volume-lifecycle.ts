import { readQcow2Header } from '../qcow2/header.js';
import type { StoragePlugin, VolumeInfo } from '../../plugins/types.js';
import { StorageDomainError } from '../../plugins/errors.js';
import { TideError } from '../errors.js';
import type { Logger } from 'pino';
import type { Runner } from '../util/runner.js';
import { alignUp } from '../util/sizes.js';
import { confirmedChildrenOf, imageVirtualBytes, PARENT_TAG, taggedChildrenOf } from './image-record.js';
import { VIRTUAL_SIZE_TAG } from './validate.js';

/**
 * Creating and deleting thin volumes on the SPM. A new volume gets its qcow2
 * header at once, so it is usable the moment the reply arrives; a deleted
 * volume is zeroed before its space goes back to the domain, so the next
 * volume carved from it cannot read a former guest's data (as oVirt does).
 */
export class VolumeInUseError extends TideError {
  readonly code = 'volume-in-use';

  /** `holderHostId`: the host whose inventory lists the volume, when that is the reason (the reply carries it). */
  constructor(message: string, options: { cause?: unknown; holderHostId?: number } = {}) {
    super(message, options.cause === undefined ? {} : { cause: options.cause });
    this.holderHostId = options.holderHostId;
  }

  readonly holderHostId: number | undefined;
}

export class VolumeHasChildrenError extends TideError {
  readonly code = 'volume-has-children';
}

const QEMU_IMG_TIMEOUT_MS = 60_000;
/** Zeroing is proportional to the volume's size; big LVs take minutes. */
const ZERO_TIMEOUT_MS = 30 * 60_000;

export async function createThinVolume(plugin: StoragePlugin, run: Runner, volume: string, initialBytes: number, virtualBytes: number, tags: Record<string, string> = {}): Promise<VolumeInfo> {
  return createImageVolume(plugin, run, volume, initialBytes, virtualBytes, tags, []);
}

/**
 * A thin volume whose image has `parent` as its backing file: the new top of a
 * snapshot, or a VM's disk over a template. Same virtual size as the parent;
 * the backing file is named by the path every host opens it by, with its
 * format, so QEMU never probes it.
 */
export async function createChildVolume(plugin: StoragePlugin, run: Runner, volume: string, parent: string, initialBytes: number, tags: Record<string, string> = {}): Promise<VolumeInfo> {
  const parentInfo = await plugin.describe(parent);
  const virtualBytes = Number(parentInfo.tags[VIRTUAL_SIZE_TAG]);
  if (!Number.isSafeInteger(virtualBytes) || virtualBytes <= 0) throw new StorageDomainError(`volume ${parent} records no virtual size; it was not made by tideline and cannot back another volume`);
  return createImageVolume(plugin, run, volume, initialBytes, virtualBytes, { ...tags, [PARENT_TAG]: parent }, ['-b', plugin.backingPath(parent), '-F', 'qcow2', '-u']);
}

async function createImageVolume(plugin: StoragePlugin, run: Runner, volume: string, initialBytes: number, virtualBytes: number, tags: Record<string, string>, backingArgs: string[]): Promise<VolumeInfo> {
  const created = await plugin.create(volume, initialBytes, { ...tags, [VIRTUAL_SIZE_TAG]: String(virtualBytes) });
  try {
    const device = await plugin.activate(volume);
    try {
      await run('qemu-img', ['create', '-q', '-f', 'qcow2', ...backingArgs, device, String(virtualBytes)], { timeoutMs: QEMU_IMG_TIMEOUT_MS });
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

/** The virtual size of an image never shrinks: a guest's data past the new end would be cut off. */
export class VirtualShrinkRefusedError extends TideError {
  readonly code = 'virtual-shrink-refused';

  constructor(readonly volume: string, readonly currentBytes: number, readonly askedBytes: number) {
    super(`the image on volume ${volume} is ${currentBytes} bytes (virtual size) and ${askedBytes} would cut off what the guest wrote past it; a virtual size only grows`);
  }
}

/**
 * Grows the volume's image to `virtualBytes` and records it. An image that is
 * already that large (grown live with `virsh blockresize` on the host running
 * the VM) is only recorded. One that must still be grown is grown here with
 * `qemu-img resize`, which only a volume no host has open allows
 * (`assertUnusedElsewhere`, and not active here either): QEMU on another host
 * would keep its own idea of the header.
 */
export async function resizeThinImage(plugin: StoragePlugin, run: Runner, volume: string, virtualBytes: number, assertUnusedElsewhere: (volume: string) => Promise<void> = async () => undefined): Promise<VolumeInfo> {
  await plugin.describe(volume);
  const current = await imageVirtualBytes(plugin, volume);
  if (virtualBytes < current) throw new VirtualShrinkRefusedError(volume, current, virtualBytes);
  if (virtualBytes > current) {
    await assertUnusedElsewhere(volume);
    if (await plugin.isActive(volume)) throw new VolumeInUseError(`volume ${volume} is active on this host, where a VM may have it open; resize it live there ('virsh blockresize' or 'tideline volume resize' on the host running the VM)`);
    const device = await plugin.activate(volume);
    try {
      await run('qemu-img', ['resize', '-q', '-f', 'qcow2', device, String(virtualBytes)], { timeoutMs: QEMU_IMG_TIMEOUT_MS });
    } finally {
      await plugin.deactivate(volume);
    }
  }
  return plugin.setTag(volume, VIRTUAL_SIZE_TAG, String(virtualBytes));
}

/**
 * `assertUnusedElsewhere`: the SPM's check of other hosts' inventories, run
 * after the refusals that hold whoever uses the volume (children), so an
 * admin hears the lasting reason first. A child counts only while its image
 * still names the volume as its backing file (a block pull frees it).
 */
export async function deleteThinVolume(plugin: StoragePlugin, run: Runner, volume: string, options: { logger: Logger; assertUnusedElsewhere?: (volume: string) => Promise<void> }): Promise<void> {
  await plugin.describe(volume);
  const children = await confirmedChildrenOf(plugin, volume, options.logger);
  if (children.length > 0) throw new VolumeHasChildrenError(`volume ${volume} backs ${children.join(', ')}; delete or commit those first`);
  await options.assertUnusedElsewhere?.(volume);
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

/**
 * A volume in use may be reduced only as an inner layer of its chain: QEMU
 * writes to the top alone, so a layer with children only ever sees reads,
 * and those stay below the end of its image. The top of a chain that is
 * active here is refused: its VM may write past any size measured now.
 * `assertUnusedElsewhere` (the SPM's check of other hosts' inventories) runs
 * for a top too. Resolves whether the volume is active on this host.
 */
export async function assertReducible(plugin: StoragePlugin, volume: string, assertUnusedElsewhere?: (volume: string) => Promise<void>): Promise<boolean> {
  const activeHere = await plugin.isActive(volume);
  if (!activeHere && !assertUnusedElsewhere) return false;
  if ((await taggedChildrenOf(plugin, volume)).length > 0) return activeHere;
  if (activeHere) {
    throw new VolumeInUseError(`volume ${volume} is active on this host and is the top of its chain, which a VM may be writing; stop the VM (or snapshot it, making ${volume} read-only) before reducing it`);
  }
  await assertUnusedElsewhere?.(volume);
  return activeHere;
}

/**
 * Gives space back (oVirt's reduce): shrinks the volume to where its qcow2
 * image ends plus `freeTargetBytes`, never below the image's end and never
 * larger than it is. For a volume no VM has open, or an inner (read-only)
 * layer of a running VM's chain (assertReducible). The SPM cannot see other
 * hosts' activations: the host that asks checks its own first. Resolves with
 * the size afterwards; a volume active here is refreshed to it.
 */
export async function reduceThinVolume(plugin: StoragePlugin, run: Runner, volume: string, freeTargetBytes: number, assertUnusedElsewhere?: (volume: string) => Promise<void>): Promise<number> {
  const before = await plugin.describe(volume);
  const activeHere = await assertReducible(plugin, volume, assertUnusedElsewhere);
  const device = await plugin.activate(volume);
  let endBytes: number;
  try {
    // -U: a running VM may hold the layer open read-only, and its lock is shared only with readers that say so.
    // Exit code 3: leaked clusters, harmless, and the report is still complete.
    const check = await run('qemu-img', ['check', '-U', '--output=json', '-f', 'qcow2', device], { timeoutMs: QEMU_IMG_TIMEOUT_MS, acceptExitCodes: [3] });
    const report = JSON.parse(check.stdout) as { 'image-end-offset'?: number; corruptions?: number };
    if (report.corruptions) throw new StorageDomainError(`volume ${volume} holds a qcow2 image with ${report.corruptions} corruptions; not reducing it (qemu-img check ${device})`);
    if (typeof report['image-end-offset'] !== 'number') throw new StorageDomainError(`qemu-img check did not report where the image on ${volume} ends; not reducing it`);
    endBytes = report['image-end-offset'];
  } finally {
    if (!activeHere) await plugin.deactivate(volume);
  }
  const target = alignUp(endBytes + freeTargetBytes, plugin.extentBytes);
  if (target >= before.sizeBytes) return before.sizeBytes;
  const reduced = (await plugin.reduce(volume, target)).sizeBytes;
  if (activeHere) await plugin.refresh(volume);
  return reduced;
}
