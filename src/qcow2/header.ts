import { open } from 'node:fs/promises';
import { TideError } from '../errors.js';

/**
 * The fixed part of a qcow2 header (QEMU's docs/interop/qcow2.txt), read from
 * the volume itself. The agent needs a disk's virtual and cluster size to cap
 * its growth, and on a live migration's destination libvirt answers no block
 * query until the migration ends; the header on the shared volume answers at
 * once and is the same on every host.
 */
export class Qcow2HeaderError extends TideError {
  readonly code = 'qcow2-header';
}

export interface Qcow2Header {
  version: number;
  virtualBytes: number;
  clusterBytes: number;
  /** The backing file's name as written in the image, if it has one. */
  backingFile: string | undefined;
}

const MAGIC = 0x514649fb; // "QFI\xfb"
export const QCOW2_HEADER_READ_BYTES = 4096;

/** Pure: the header from the image's first bytes; the backing file name only if those bytes hold it. */
export function parseQcow2Header(bytes: Uint8Array, where: string): Qcow2Header {
  if (bytes.length < 72) throw new Qcow2HeaderError(`${where} is too short for a qcow2 header (${bytes.length} bytes); is it a qcow2 image?`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0) !== MAGIC) throw new Qcow2HeaderError(`${where} has no qcow2 magic; it is not a qcow2 image (was it formatted with qemu-img create -f qcow2?)`);
  const version = view.getUint32(4);
  if (version !== 2 && version !== 3) throw new Qcow2HeaderError(`${where} is qcow2 version ${version}; only versions 2 and 3 exist`);
  const backingOffset = Number(view.getBigUint64(8));
  const backingLength = view.getUint32(16);
  const clusterBits = view.getUint32(20);
  if (clusterBits < 9 || clusterBits > 21) throw new Qcow2HeaderError(`${where} names a cluster size of 2^${clusterBits} bytes; qcow2 allows 2^9 to 2^21`);
  const virtualBytes = Number(view.getBigUint64(24));
  let backingFile: string | undefined;
  if (backingOffset > 0 && backingLength > 0 && backingOffset + backingLength <= bytes.length) {
    backingFile = new TextDecoder().decode(bytes.subarray(backingOffset, backingOffset + backingLength));
  }
  return { version, virtualBytes, clusterBytes: 2 ** clusterBits, backingFile };
}

/** Reads the header of the image at `path` (a block device or file). */
export async function readQcow2Header(path: string): Promise<Qcow2Header> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    throw new Qcow2HeaderError(`cannot open ${path} to read its qcow2 header: ${(error as Error).message}`, { cause: error });
  }
  try {
    const buffer = Buffer.alloc(QCOW2_HEADER_READ_BYTES);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    return parseQcow2Header(buffer.subarray(0, bytesRead), path);
  } finally {
    await handle.close();
  }
}
