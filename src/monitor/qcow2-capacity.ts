import type { Qcow2Header } from '../qcow2/header.js';
/**
 * The largest a qcow2 image can grow on its volume: every guest cluster
 * allocated plus all the metadata that describes them. Extending a volume past
 * this only wastes shared storage, so it is the extension cap.
 *
 * oVirt caps at virtual size x 1.1, a guess that is 10 % too generous for big
 * disks. This is the exact figure that `qemu-img measure` reports as
 * "fully-allocated" for an image without backing file, snapshots or bitmaps
 * (QEMU block/qcow2.c: qcow2_calc_prealloc_size); the integration tests check
 * it against qemu-img for several sizes.
 */

export const DEFAULT_CLUSTER_BYTES = 64 * 1024;
/** Width of a refcount entry (qcow2 refcount_order 4 = 16 bits, QEMU's default). */
export const DEFAULT_REFCOUNT_BITS = 16;

const L1_ENTRY_BYTES = 8;
const L2_ENTRY_BYTES = 8;
const REFTABLE_ENTRY_BYTES = 8;

export function qcow2FullyAllocatedBytes(
  virtualBytes: number,
  clusterBytes = DEFAULT_CLUSTER_BYTES,
  refcountBits = DEFAULT_REFCOUNT_BITS,
): number {
  const dataBytes = roundUp(virtualBytes, clusterBytes);
  const header = clusterBytes;

  // One L2 entry per data cluster, in whole L2 tables of one cluster each.
  const l2Entries = roundUp(dataBytes / clusterBytes, clusterBytes / L2_ENTRY_BYTES);
  const l2Bytes = l2Entries * L2_ENTRY_BYTES;

  // One L1 entry per L2 table; the L1 table is whole clusters.
  const l1Entries = roundUp((l2Entries * L2_ENTRY_BYTES) / clusterBytes, clusterBytes / L1_ENTRY_BYTES);
  const l1Bytes = l1Entries * L1_ENTRY_BYTES;

  const describedClusters = (header + l2Bytes + l1Bytes + dataBytes) / clusterBytes;
  return header + l2Bytes + l1Bytes + dataBytes + refcountMetadataBytes(describedClusters, clusterBytes, refcountBits);
}

/**
 * Refcount blocks count every cluster, themselves and the refcount table
 * included, so their number is the fixed point of a small recurrence.
 */
function refcountMetadataBytes(clusters: number, clusterBytes: number, refcountBits: number): number {
  const refcountsPerBlock = (clusterBytes * 8) / refcountBits;
  const blocksPerTableCluster = clusterBytes / REFTABLE_ENTRY_BYTES;
  let blocks = 0;
  let table = 0;
  let total = 0;
  let previous: number;
  do {
    previous = total;
    blocks = Math.ceil((clusters + table + blocks) / refcountsPerBlock);
    table = Math.ceil(blocks / blocksPerTableCluster);
    total = clusters + blocks + table;
  } while (total !== previous);
  return (blocks + table) * clusterBytes;
}

function roundUp(value: number, multiple: number): number {
  return Math.ceil(value / multiple) * multiple;
}

/**
 * How far a drive's volume may grow: what its image can use, in whole extents,
 * and never past an administrator's limit (itself rounded down to an extent,
 * but at least one). `bitmapBytes`: room for the image's persistent dirty
 * bitmaps (qcow2BitmapBytes), which the fully allocated size leaves out.
 */
export function driveCapBytes(virtualBytes: number, clusterBytes: number | undefined, extentBytes: number, limitBytes?: number, bitmapBytes = 0): number {
  const imageCap = Math.ceil((qcow2FullyAllocatedBytes(virtualBytes, clusterBytes ?? DEFAULT_CLUSTER_BYTES) + bitmapBytes) / extentBytes) * extentBytes;
  if (!limitBytes) return imageCap;
  return Math.min(imageCap, Math.max(extentBytes, Math.floor(limitBytes / extentBytes) * extentBytes));
}

/**
 * What persistent dirty bitmaps can take in a qcow2 image at most (pure): for
 * each bitmap its data clusters and its table's clusters, plus the bitmap
 * directory; the same number `qemu-img measure` reports as "bitmaps".
 */
export function qcow2BitmapBytes(virtualBytes: number, clusterBytes: number, granularities: readonly number[], directoryBytes: number): number {
  if (granularities.length === 0) return 0;
  let clusters = Math.ceil(directoryBytes / clusterBytes);
  for (const granularity of granularities) {
    const dataClusters = Math.ceil(Math.ceil(virtualBytes / granularity) / (clusterBytes * 8));
    clusters += dataClusters + Math.ceil((dataClusters * 8) / clusterBytes);
  }
  return clusters * clusterBytes;
}

/** qcow2BitmapBytes for an image whose header (and bitmap directory) was read. */
export function headerBitmapBytes(header: Pick<Qcow2Header, 'virtualBytes' | 'clusterBytes' | 'bitmapGranularities' | 'bitmapDirectory'>): number {
  return qcow2BitmapBytes(header.virtualBytes, header.clusterBytes, header.bitmapGranularities ?? [], header.bitmapDirectory?.bytes ?? 0);
}
