import { createHash } from 'node:crypto';
import { asBuffer, assertHostCount, BLOCK_BYTES, checksumMatches, FORMAT_VERSION, invalid, isZero, sealBlock, type Decoded } from './format.js';

/**
 * A host's inventory: which volumes it has active (so a VM there may have
 * them open), one 4 KiB block per host after the reply slots, written only by
 * that host's agent. The SPM reads it before it deletes or reduces a volume,
 * since it cannot see other hosts' activations any other way.
 *
 * Volumes are recorded as the first 8 bytes of the SHA-256 of their name: 440
 * fit in a block, and a collision only makes the SPM refuse a delete it could
 * have done. A host with more active volumes sets the overflow flag; the SPM
 * then treats every volume as possibly open there. The heartbeat advances at
 * every write, so the SPM can tell an agent that publishes from one that
 * stopped.
 *
 * Incoming views: for each volume of a VM migrating in to this host, the
 * size this host sees (its device-mapper table). The source of the migration
 * uses new space only once the destination's view covers it
 * (src/monitor/migration.ts): QEMU reads past the end of a block device as
 * zeros, so a destination with a smaller view would read the source's newest
 * data, and qcow2 tables, as zeros.
 *
 *   0  magic 'TLIV'        4  version (u16)     6  host id (u16)
 *   8  heartbeat (u64)    16  count (u32)      20  CRC32 of the block, with this field 0
 *  24  flags (u32: 1 = overflow)                28  incoming view count (u32)
 *  32  written at (u64, ms since the epoch, the writer's wall clock: for people; liveness is the heartbeat advancing)
 *  64  count x 8-byte name hashes, then incoming views x (8-byte name hash, u64 view bytes)
 */
export const INVENTORY_MAGIC = 'TLIV';
export const INVENTORY_HEADER_BYTES = 64;
export const NAME_HASH_BYTES = 8;
const INCOMING_VIEW_BYTES = NAME_HASH_BYTES + 8;
/** Incoming views a block holds: more VMs migrating in to one host at once than this is not a real case. */
export const MAX_INCOMING_VIEWS = 32;
export const MAX_INVENTORY_ENTRIES = (BLOCK_BYTES - INVENTORY_HEADER_BYTES - MAX_INCOMING_VIEWS * INCOMING_VIEW_BYTES) / NAME_HASH_BYTES;
const CRC_OFFSET = 20;
const OVERFLOW = 1;

export interface Inventory {
  hostId: number;
  heartbeat: number;
  /** Name hashes (hex) of the active volumes; all of them unless `overflow`. */
  hashes: ReadonlySet<string>;
  overflow: boolean;
  /** Name hash (hex) -> bytes this host sees, for volumes of VMs migrating in to it. */
  incomingViews: ReadonlyMap<string, number>;
  /** The writer's wall clock at the write (ms since the epoch); 0 when unknown. */
  writtenAtMs: number;
}

export function volumeNameHash(volume: string): string {
  return createHash('sha256').update(volume, 'utf8').digest().subarray(0, NAME_HASH_BYTES).toString('hex');
}

export function encodeInventory(hostId: number, heartbeat: number, activeVolumes: readonly string[], incomingViews: ReadonlyMap<string, number> = new Map(), writtenAtMs = 0): Buffer {
  assertHostCount(hostId);
  if (!Number.isSafeInteger(heartbeat) || heartbeat < 0) throw new RangeError(`heartbeat ${heartbeat} must be a non-negative integer`);
  if (incomingViews.size > MAX_INCOMING_VIEWS) throw new RangeError(`${incomingViews.size} incoming views; a block holds ${MAX_INCOMING_VIEWS}`);
  for (const [volume, bytes] of incomingViews) {
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw new RangeError(`incoming view of ${volume}: ${bytes} must be a non-negative integer`);
  }
  const hashes = [...new Set(activeVolumes.map(volumeNameHash))].sort();
  const overflow = hashes.length > MAX_INVENTORY_ENTRIES;
  const kept = hashes.slice(0, MAX_INVENTORY_ENTRIES);
  const block = Buffer.alloc(BLOCK_BYTES);
  block.write(INVENTORY_MAGIC, 0, 'ascii');
  block.writeUInt16LE(FORMAT_VERSION, 4);
  block.writeUInt16LE(hostId, 6);
  block.writeBigUInt64LE(BigInt(heartbeat), 8);
  block.writeUInt32LE(kept.length, 16);
  block.writeUInt32LE(overflow ? OVERFLOW : 0, 24);
  block.writeUInt32LE(incomingViews.size, 28);
  block.writeBigUInt64LE(BigInt(Math.max(0, Math.floor(writtenAtMs))), 32);
  kept.forEach((hash, index) => block.write(hash, INVENTORY_HEADER_BYTES + index * NAME_HASH_BYTES, 'hex'));
  let offset = INVENTORY_HEADER_BYTES + kept.length * NAME_HASH_BYTES;
  for (const [volume, bytes] of incomingViews) {
    block.write(volumeNameHash(volume), offset, 'hex');
    block.writeBigUInt64LE(BigInt(bytes), offset + NAME_HASH_BYTES);
    offset += INCOMING_VIEW_BYTES;
  }
  return sealBlock(block, CRC_OFFSET);
}

export function decodeInventory(bytes: Uint8Array, expectedHostId: number): Decoded<Inventory> {
  const block = asBuffer(bytes);
  if (block.length !== BLOCK_BYTES) return invalid('bad-size', `inventory is ${block.length} bytes, expected ${BLOCK_BYTES}`);
  if (isZero(block)) return { kind: 'empty' };
  if (block.toString('latin1', 0, 4) !== INVENTORY_MAGIC) return invalid('bad-magic', `expected ${INVENTORY_MAGIC}`);
  if (!checksumMatches(block, CRC_OFFSET)) return invalid('bad-checksum', 'inventory checksum mismatch (torn or corrupted write)');
  if (block.readUInt16LE(4) !== FORMAT_VERSION) return invalid('foreign-version', `inventory format version ${block.readUInt16LE(4)}`);
  const hostId = block.readUInt16LE(6);
  if (hostId !== expectedHostId) return invalid('wrong-host', `inventory of host ${expectedHostId} claims host ${hostId}`);
  const heartbeat = block.readBigUInt64LE(8);
  if (heartbeat > BigInt(Number.MAX_SAFE_INTEGER)) return invalid('bad-heartbeat', 'heartbeat beyond 2^53');
  const count = block.readUInt32LE(16);
  if (count > MAX_INVENTORY_ENTRIES) return invalid('bad-count', `inventory claims ${count} entries, at most ${MAX_INVENTORY_ENTRIES} fit`);
  const viewCount = block.readUInt32LE(28);
  if (viewCount > MAX_INCOMING_VIEWS) return invalid('bad-count', `inventory claims ${viewCount} incoming views, at most ${MAX_INCOMING_VIEWS} fit`);
  const hashes = new Set<string>();
  for (let index = 0; index < count; index += 1) hashes.add(block.toString('hex', INVENTORY_HEADER_BYTES + index * NAME_HASH_BYTES, INVENTORY_HEADER_BYTES + (index + 1) * NAME_HASH_BYTES));
  const incomingViews = new Map<string, number>();
  for (let index = 0, offset = INVENTORY_HEADER_BYTES + count * NAME_HASH_BYTES; index < viewCount; index += 1, offset += INCOMING_VIEW_BYTES) {
    const bytes = block.readBigUInt64LE(offset + NAME_HASH_BYTES);
    if (bytes > BigInt(Number.MAX_SAFE_INTEGER)) return invalid('bad-size', 'incoming view beyond 2^53 bytes');
    incomingViews.set(block.toString('hex', offset, offset + NAME_HASH_BYTES), Number(bytes));
  }
  return { kind: 'valid', value: { hostId, heartbeat: Number(heartbeat), hashes, overflow: (block.readUInt32LE(24) & OVERFLOW) !== 0, incomingViews, writtenAtMs: Number(block.readBigUInt64LE(32) & BigInt(Number.MAX_SAFE_INTEGER)) } };
}

/** Whether this inventory says the volume may be active on its host. */
export function inventoryHolds(inventory: Inventory, volume: string): boolean {
  return inventory.overflow || inventory.hashes.has(volumeNameHash(volume));
}

/** The size this inventory's host sees `volume` at while a VM migrates in to it; undefined if it announces none. */
export function incomingView(inventory: Inventory, volume: string): number | undefined {
  return inventory.incomingViews.get(volumeNameHash(volume));
}
