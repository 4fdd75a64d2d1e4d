import { crc32 } from 'node:zlib';
import { BLOCK_BYTES } from '../mailbox/format.js';

/**
 * One host's block of the storage lease volume (pure encode/decode). Each
 * host writes only its own block; everyone reads all of them.
 */
export const LEASE_MAGIC = 'TLLEASE1';

export enum LeaseState {
  Idle = 0,
  Contending = 1,
  Holding = 2,
}

export interface LeaseBlock {
  hostId: number;
  state: LeaseState;
  /** Bumped on every write: other hosts watch it change to know this host is alive. */
  heartbeat: number;
  /** Identifies one acquisition attempt of this host; new attempts get a higher number. */
  ballot: number;
  /**
   * Wall-clock time (ms since the epoch) the current hold began, 0 when not
   * holding or unknown. Shown to people (`tideline cluster`); the lease itself
   * never compares clocks of different hosts.
   */
  holdingSinceMs?: number;
}

const CRC_OFFSET = 36;
const HOLDING_SINCE_OFFSET = 40;

export function encodeLeaseBlock(block: LeaseBlock): Buffer {
  const buffer = Buffer.alloc(BLOCK_BYTES);
  buffer.write(LEASE_MAGIC, 0, 'ascii');
  buffer.writeUInt16LE(block.hostId, 8);
  buffer.writeUInt8(block.state, 10);
  buffer.writeBigUInt64LE(BigInt(block.heartbeat), 16);
  buffer.writeBigUInt64LE(BigInt(block.ballot), 24);
  buffer.writeBigUInt64LE(BigInt(block.holdingSinceMs ?? 0), HOLDING_SINCE_OFFSET);
  buffer.writeUInt32LE(crc32(buffer), CRC_OFFSET);
  return buffer;
}

/** undefined for a never-written block; 'invalid' for a torn or foreign one (treated as idle, but not as silence). */
export function decodeLeaseBlock(bytes: Uint8Array, hostId: number): LeaseBlock | 'invalid' | undefined {
  const buffer = Buffer.from(bytes);
  if (buffer.length !== BLOCK_BYTES) return 'invalid';
  if (buffer.every((byte) => byte === 0)) return undefined;
  const stored = buffer.readUInt32LE(CRC_OFFSET);
  buffer.writeUInt32LE(0, CRC_OFFSET);
  if (buffer.toString('ascii', 0, 8) !== LEASE_MAGIC || crc32(buffer) !== stored || buffer.readUInt16LE(8) !== hostId) return 'invalid';
  const state = buffer.readUInt8(10);
  if (!(state in LeaseState)) return 'invalid';
  const holdingSinceMs = Number(buffer.readBigUInt64LE(HOLDING_SINCE_OFFSET));
  return { hostId, state, heartbeat: Number(buffer.readBigUInt64LE(16)), ballot: Number(buffer.readBigUInt64LE(24)), ...(holdingSinceMs > 0 ? { holdingSinceMs } : {}) };
}
