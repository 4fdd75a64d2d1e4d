import type { VolumeInfo } from '../../plugins/types.js';
import { PARENT_TAG } from '../spm/image-record.js';

/**
 * The volumes of a domain as a forest of backing chains (pure): every volume
 * after its parent, one level deeper, siblings by name. A volume whose parent
 * is gone (or a tag naming itself) is a root, so nothing is ever hidden.
 */
export interface TreeRow {
  volume: VolumeInfo;
  depth: number;
}

export function volumeTree(volumes: readonly VolumeInfo[]): TreeRow[] {
  const byName = new Map(volumes.map((volume) => [volume.name, volume]));
  const children = new Map<string, VolumeInfo[]>();
  const roots: VolumeInfo[] = [];
  for (const volume of volumes) {
    const parent = volume.tags[PARENT_TAG];
    if (parent && parent !== volume.name && byName.has(parent)) children.set(parent, [...(children.get(parent) ?? []), volume]);
    else roots.push(volume);
  }
  const rows: TreeRow[] = [];
  const seen = new Set<string>();
  const visit = (volume: VolumeInfo, depth: number) => {
    if (seen.has(volume.name)) return; // a cycle of tags written by hand
    seen.add(volume.name);
    rows.push({ volume, depth });
    for (const child of [...(children.get(volume.name) ?? [])].sort((a, b) => a.name.localeCompare(b.name))) visit(child, depth + 1);
  };
  for (const root of [...roots].sort((a, b) => a.name.localeCompare(b.name))) visit(root, 0);
  // Volumes only reachable through a cycle have no root: list them too.
  for (const volume of volumes) if (!seen.has(volume.name)) visit(volume, 0);
  return rows;
}
