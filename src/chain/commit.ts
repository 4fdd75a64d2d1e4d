import type { StoragePlugin, VolumeInfo } from '../../plugins/types.js';
import { errorMessage } from '../errors.js';
import { parseDomainXml } from '../libvirt/domain-xml.js';
import type { Virsh } from '../libvirt/virsh.js';
import { volumeCap } from '../spm/validate.js';
import { PARENT_TAG } from '../spm/image-record.js';
import { SnapshotError } from './snapshot.js';
import { layerMergeBytes } from './measure.js';
import type { Runner } from '../util/runner.js';

/**
 * Block commit of a running libvirt domain's disk, the guest writing
 * throughout: the layers above `base` are merged into it and the domain
 * pivots onto it (active commit), or an inner layer is merged away under the
 * active one. Before the job starts the base is extended through the SPM by
 * what the merged layers hold (`qemu-img measure` of each layer's own data,
 * measure.ts; its volume size only where that cannot be measured), plus a
 * chunk of headroom for what the guest writes during an active commit (but
 * never more than the merged volumes' sizes), capped by the base's own cap,
 * so the job cannot run the base out of space. The agent follows the pivot like any new top. The
 * merged volumes are then deactivated here and zeroed and deleted by the SPM,
 * the top first (a parent is never deleted before its child).
 *
 * Then space goes back: after an inner commit the base is an inner layer,
 * read-only under the active one, and is reduced to its image's end plus the
 * free target at once. After an active commit the base is the layer the guest
 * writes, which is never reduced live (the guest may write past any size
 * measured now, before this host sees the smaller device): it keeps its size
 * until the VM is stopped and `tideline volume reduce` runs on it.
 */
export interface CommitDependencies {
  virsh: Virsh;
  plugin: StoragePlugin;
  /** Through the agent: the SPM extends, this host refreshes. */
  extend(volume: string, sizeBytes: number): Promise<number>;
  /** Through the agent: the SPM records a layer's new parent. */
  reparent(volume: string, parent: string): Promise<void>;
  remove(volume: string): Promise<void>;
  /** Through the agent: the SPM shrinks to the image's end plus the free target; this host refreshes. */
  reduce(volume: string): Promise<number>;
  /** Runs qemu-img measure on the merged layers. */
  run: Runner;
  /** What the guest may write during an active commit, on top of what the layers hold: the drive's chunk. */
  activeCommitHeadroomBytes: number;
}

export interface CommitOutcome {
  base: string;
  merged: string[];
  baseBytesBefore: number;
  /** After the extension for the merge. */
  baseBytesAfter: number;
  /** After giving space back; undefined after an active commit (the base is the written top now). */
  baseBytesReduced: number | undefined;
}

/** What a layer brings into the merge, measured; its volume's size (an upper bound) when it cannot be. */
async function mergeBytesOf(dependencies: CommitDependencies, volume: string, volumeBytes: number): Promise<number> {
  const path = await dependencies.plugin.activePath(volume);
  if (path === undefined) return volumeBytes;
  return Math.min(volumeBytes, await layerMergeBytes(dependencies.run, path).catch(() => volumeBytes));
}

/** From the top down to (not including) `base`, by the volumes' parent tags (pure). */
export function layersAbove(volumes: readonly VolumeInfo[], top: string, base: string | undefined): { merged: string[]; base: string } {
  const byName = new Map(volumes.map((volume) => [volume.name, volume]));
  const merged: string[] = [];
  let current = top;
  for (;;) {
    const parent = byName.get(current)?.tags[PARENT_TAG];
    if (!parent) throw new SnapshotError(base ? `${base} is not below ${top} in its chain (${[...merged, current].filter((name, index, all) => all.indexOf(name) === index).join(' -> ')} ends there)` : `${top} has no parent volume: there is nothing to commit it into`);
    merged.push(current);
    if (parent === base || base === undefined) return { merged, base: parent };
    if (merged.length > 64) throw new SnapshotError(`the chain under ${top} loops or is longer than 64 layers`);
    current = parent;
  }
}

/**
 * `options.top`: an inner layer to merge (with those under it down to the
 * base) while the active layer stays; QEMU then points the layer above it at
 * the base, and the SPM records that in its tags. Without it: active commit
 * of the disk's top, with pivot.
 */
export async function commitDisk(dependencies: CommitDependencies, domain: string, target: string, options: { base?: string; top?: string } = {}): Promise<CommitOutcome> {
  const { virsh, plugin } = dependencies;
  const disk = parseDomainXml(await virsh.dumpXml(domain)).disks.find((candidate) => candidate.target === target && candidate.device === 'disk');
  if (!disk?.source) throw new SnapshotError(`domain ${domain} has no disk ${target}`);
  const active = await plugin.volumeForPath(disk.source);
  if (!active) throw new SnapshotError(`disk ${target} of domain ${domain} is not on a volume of storage domain ${plugin.domain}`);
  const volumes = await plugin.list();
  const top = options.top ?? active;
  // The layer whose backing the inner commit changes: the one right above `top` in the disk's chain.
  let above: string | undefined;
  if (top !== active) {
    const chain = layersAbove(volumes, active, top).merged;
    above = chain[chain.length - 1];
  }
  const { merged, base } = layersAbove(volumes, top, options.base);

  const baseInfo = volumes.find((volume) => volume.name === base)!;
  // An inner commit merges layers nobody writes: what they hold is exact. An active commit also copies what the
  // guest writes during the job, and nobody extends the base meanwhile: one chunk of headroom more (as VDSM adds),
  // never more than the merged volumes' sizes, which bound everything the layers could hold.
  let measuredBytes = 0;
  let volumeBytes = 0;
  for (const name of merged) {
    const size = volumes.find((volume) => volume.name === name)!.sizeBytes;
    volumeBytes += size;
    measuredBytes += await mergeBytesOf(dependencies, name, size);
  }
  const mergedBytes = above === undefined ? Math.min(volumeBytes, measuredBytes + dependencies.activeCommitHeadroomBytes) : measuredBytes;
  const cap = volumeCap(baseInfo, plugin.extentBytes) ?? Number.MAX_SAFE_INTEGER;
  const wanted = Math.min(cap, baseInfo.sizeBytes + mergedBytes);
  const baseBytesAfter = wanted > baseInfo.sizeBytes ? await dependencies.extend(base, wanted) : baseInfo.sizeBytes;

  // Layers are named as libvirt indexes them (vda[2]): the path a layer has in libvirt's chain depends on how it was first opened.
  const layerName = async (volume: string): Promise<string> => {
    for (const layer of [{ source: disk.source, index: disk.index }, ...disk.backingChain]) {
      if (layer.source && layer.index !== undefined && (await plugin.volumeForPath(layer.source)) === volume) return `${target}[${layer.index}]`;
    }
    throw new SnapshotError(`volume ${volume} is not in the chain libvirt shows for ${domain} ${target}`);
  };
  const job =
    above === undefined
      ? // --shallow: into the immediate parent.
        ['--active', '--pivot', ...(merged.length === 1 ? ['--shallow'] : ['--base', await layerName(base)])]
      : ['--top', await layerName(top), '--base', await layerName(base)];
  try {
    await virsh.virsh(['blockcommit', '--domain', domain, '--path', target, '--wait', ...job], []);
  } catch (error) {
    throw new SnapshotError(`block commit of ${domain} ${target} into ${base} failed; the domain still runs on ${active} and nothing was deleted (${errorMessage(error)})`, { cause: error });
  }
  if (above !== undefined) await dependencies.reparent(above, base);
  for (const volume of merged) {
    await plugin.deactivate(volume);
    await dependencies.remove(volume);
  }
  const baseBytesReduced = above === undefined ? undefined : await dependencies.reduce(base);
  return { base, merged, baseBytesBefore: baseInfo.sizeBytes, baseBytesAfter, baseBytesReduced };
}
