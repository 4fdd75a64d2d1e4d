import type { StoragePlugin, VolumeInfo } from '../../plugins/types.js';
import { errorMessage } from '../errors.js';
import { parseDomainXml } from '../libvirt/domain-xml.js';
import type { Virsh } from '../libvirt/virsh.js';
import { volumeCap } from '../spm/validate.js';
import { PARENT_TAG } from '../spm/volume-lifecycle.js';
import { SnapshotError } from './snapshot.js';

/**
 * Active block commit of a running libvirt domain's disk: the layers above
 * `base` are merged into it and the domain pivots onto it, the guest writing
 * throughout. Before the job starts the base is extended through the SPM by
 * what the merged layers hold (their volume sizes bound it; oVirt extends by
 * the top's allocation), capped by the base's own cap, so the job cannot run
 * the base out of space. The agent follows the pivot like any new top. The
 * merged volumes are then deactivated here and zeroed and deleted by the SPM,
 * the top first (a parent is never deleted before its child).
 */
export interface CommitDependencies {
  virsh: Virsh;
  plugin: StoragePlugin;
  /** Through the agent: the SPM extends, this host refreshes. */
  extend(volume: string, sizeBytes: number): Promise<number>;
  remove(volume: string): Promise<void>;
}

export interface CommitOutcome {
  base: string;
  merged: string[];
  baseBytesBefore: number;
  baseBytesAfter: number;
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

export async function commitDisk(dependencies: CommitDependencies, domain: string, target: string, options: { base?: string } = {}): Promise<CommitOutcome> {
  const { virsh, plugin } = dependencies;
  const disk = parseDomainXml(await virsh.dumpXml(domain)).disks.find((candidate) => candidate.target === target && candidate.device === 'disk');
  if (!disk?.source) throw new SnapshotError(`domain ${domain} has no disk ${target}`);
  const top = await plugin.volumeForPath(disk.source);
  if (!top) throw new SnapshotError(`disk ${target} of domain ${domain} is not on a volume of storage domain ${plugin.domain}`);
  const volumes = await plugin.list();
  const { merged, base } = layersAbove(volumes, top, options.base);

  const baseInfo = volumes.find((volume) => volume.name === base)!;
  const mergedBytes = merged.reduce((sum, name) => sum + volumes.find((volume) => volume.name === name)!.sizeBytes, 0);
  const cap = volumeCap(baseInfo, plugin.extentBytes) ?? Number.MAX_SAFE_INTEGER;
  const wanted = Math.min(cap, baseInfo.sizeBytes + mergedBytes);
  const baseBytesAfter = wanted > baseInfo.sizeBytes ? await dependencies.extend(base, wanted) : baseInfo.sizeBytes;

  // --shallow: into the immediate parent; otherwise into the named base, by the path its child's header names it.
  const into = merged.length === 1 ? ['--shallow'] : ['--base', plugin.backingPath(base)];
  try {
    await virsh.virsh(['blockcommit', '--domain', domain, '--path', target, '--active', '--pivot', '--wait', ...into], []);
  } catch (error) {
    throw new SnapshotError(`block commit of ${domain} ${target} into ${base} failed; the domain still runs on ${top} and nothing was deleted (${errorMessage(error)})`, { cause: error });
  }
  for (const volume of merged) {
    await plugin.deactivate(volume);
    await dependencies.remove(volume);
  }
  return { base, merged, baseBytesBefore: baseInfo.sizeBytes, baseBytesAfter };
}
