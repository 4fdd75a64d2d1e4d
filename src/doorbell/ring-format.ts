import { asBuffer, checksumMatches, invalid, MAX_HOSTS_LIMIT, readUuid, sealBlock, writeUuid, type Decoded } from '../mailbox/format.js';

/**
 * The doorbell's datagram (docs/mailbox-format.md, "Doorbell"): after a host
 * wrote a request into its slot and rewrote the wake-up block, it sends this
 * to the SPM candidates' doorbell addresses, so that a quiet SPM looks at
 * once instead of at its next read of the wake-up block. It carries nothing
 * the SPM acts on but "look now": the request itself is only ever read from
 * the mailbox, so a forged, lost or repeated ring costs a scan or latency,
 * never a wrong answer.
 */
export const RING_MAGIC = 'TLDB';
export const RING_VERSION = 1;
export const RING_BYTES = 28;
export const RING_CHECKSUM_OFFSET = 24;

export interface Ring {
  /** The host that rang: the slot its request is in. */
  hostId: number;
  /** The mailbox the request is in (its header's id): an SPM of another cluster on the same address ignores the ring. */
  mailboxId: string;
}

export function encodeRing(ring: Ring): Buffer {
  if (!Number.isInteger(ring.hostId) || ring.hostId < 1 || ring.hostId > MAX_HOSTS_LIMIT) throw new RangeError(`host id ${ring.hostId} must be 1..${MAX_HOSTS_LIMIT}`);
  const datagram = Buffer.alloc(RING_BYTES);
  datagram.write(RING_MAGIC, 0, 'ascii');
  datagram.writeUInt16LE(RING_VERSION, 4);
  datagram.writeUInt16LE(ring.hostId, 6);
  writeUuid(datagram, 8, ring.mailboxId);
  return sealBlock(datagram, RING_CHECKSUM_OFFSET);
}

/** Checks, in order: size, magic, CRC, version, host id (1..maxHosts). Pure; every failure says why. */
export function decodeRing(bytes: Uint8Array, maxHosts: number): Decoded<Ring> {
  const datagram = asBuffer(bytes);
  if (datagram.length !== RING_BYTES) return invalid('bad-size', `${datagram.length} bytes, a ring is ${RING_BYTES}`);
  if (datagram.toString('latin1', 0, 4) !== RING_MAGIC) return invalid('bad-magic', `magic ${JSON.stringify(datagram.toString('latin1', 0, 4))}`);
  if (!checksumMatches(datagram, RING_CHECKSUM_OFFSET)) return invalid('bad-checksum', 'CRC32 does not match');
  const version = datagram.readUInt16LE(4);
  if (version !== RING_VERSION) return invalid('foreign-version', `ring version ${version}, this tideline reads ${RING_VERSION}`);
  const hostId = datagram.readUInt16LE(6);
  if (hostId < 1 || hostId > maxHosts) return invalid('wrong-host', `host id ${hostId} is outside this mailbox's 1..${maxHosts}`);
  return { kind: 'valid', value: { hostId, mailboxId: readUuid(datagram, 8) } };
}
