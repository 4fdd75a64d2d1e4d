/**
 * Reading QEMU's block graph from QMP replies (query-block, query-blockstats).
 * Pure: replies in, drive descriptions out.
 */
export interface QemuDrive {
  /** Device id (qdev id of -device ... id=vda), used as the drive's name. */
  drive: string;
  /** The format node (qcow2) the device uses. */
  formatNode: string;
  /** Its protocol child: the block device whose offsets the threshold and high-water refer to. */
  protocolNode: string;
  /** Path of the protocol node's file, e.g. /dev/loop3 or /dev/vg/lv. */
  path: string;
  format: string;
  virtualBytes: number;
  clusterBytes: number | undefined;
}

interface BlockInfo {
  device?: string;
  qdev?: string;
  'io-status'?: string;
  inserted?: {
    'node-name'?: string;
    file?: string;
    drv?: string;
    image?: { 'virtual-size'?: number; 'cluster-size'?: number; format?: string };
  };
}

export interface BlockStats {
  device?: string;
  qdev?: string;
  'node-name'?: string;
  stats?: { wr_highest_offset?: number };
  parent?: BlockStats;
}

/**
 * The block device under a format node's filename. QEMU names a node whose
 * backing link was made at run time (blockdev-snapshot) by a `json:{...}`
 * pseudo-filename; its "file" is the protocol node, the device itself.
 */
export function protocolPath(filename: string): string {
  if (!filename.startsWith('json:')) return filename;
  try {
    const options = JSON.parse(filename.slice('json:'.length)) as { file?: { filename?: unknown } | string; 'file.filename'?: unknown };
    const nested = typeof options.file === 'object' ? options.file?.filename : undefined;
    const flat = options['file.filename'];
    const found = typeof nested === 'string' ? nested : typeof flat === 'string' ? flat : undefined;
    return found ?? filename;
  } catch {
    return filename;
  }
}

/** "/machine/peripheral/vda/virtio-backend" → "vda"; libvirt's aliases come the same way. */
export function driveName(qdev: string | undefined, fallback: string): string {
  if (!qdev) return fallback;
  const match = /^\/machine\/peripheral(?:-anon)?\/([^/]+)/.exec(qdev);
  return match?.[1] ?? qdev;
}

export function describeDrives(blocks: readonly BlockInfo[], stats: readonly BlockStats[]): QemuDrive[] {
  const drives: QemuDrive[] = [];
  for (const block of blocks) {
    const inserted = block.inserted;
    const formatNode = inserted?.['node-name'];
    if (!inserted || !formatNode) continue;
    const stat = stats.find((entry) => entry['node-name'] === formatNode);
    const protocolNode = stat?.parent?.['node-name'];
    if (!protocolNode) continue;
    drives.push({
      drive: driveName(block.qdev, block.device || formatNode),
      formatNode,
      protocolNode,
      path: protocolPath(inserted.file ?? ''),
      format: inserted.image?.format ?? inserted.drv ?? 'unknown',
      virtualBytes: inserted.image?.['virtual-size'] ?? 0,
      clusterBytes: inserted.image?.['cluster-size'],
    });
  }
  return drives;
}

/** wr_highest_offset of each drive's protocol node: how far into the volume the image reaches. */
export function highWaterMarks(drives: readonly QemuDrive[], stats: readonly BlockStats[]): Map<string, number> {
  const marks = new Map<string, number>();
  for (const drive of drives) {
    const stat = stats.find((entry) => entry['node-name'] === drive.formatNode);
    const offset = stat?.parent?.stats?.wr_highest_offset;
    if (offset !== undefined) marks.set(drive.drive, offset);
  }
  return marks;
}

/** Drives whose device now sits on another node than the one described (a new top layer, or a pivot). */
export function changedLayers(drives: readonly QemuDrive[], stats: readonly BlockStats[]): string[] {
  return drives
    .filter((drive) => {
      const current = stats.find((entry) => driveName(entry.qdev, entry.device || (entry['node-name'] ?? '')) === drive.drive);
      return current?.['node-name'] !== undefined && current['node-name'] !== drive.formatNode;
    })
    .map((drive) => drive.drive);
}

export function noSpaceDrives(drives: readonly QemuDrive[], blocks: readonly BlockInfo[]): Set<string> {
  const result = new Set<string>();
  for (const block of blocks) {
    if (block['io-status'] !== 'nospace') continue;
    const drive = drives.find((candidate) => candidate.formatNode === block.inserted?.['node-name']);
    if (drive) result.add(drive.drive);
  }
  return result;
}

export type { BlockInfo };
