import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { alignedBuffer } from '../util/aligned-buffer.js';
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
  /** Where the persistent dirty bitmaps' directory lies, when the image has any (version 3 header extension). */
  bitmapDirectory?: { offset: number; bytes: number; count: number };
  /** Granularity of each persistent bitmap, once the directory was read. */
  bitmapGranularities?: number[];
}

const BITMAPS_EXTENSION = 0x23852875;

const MAGIC = 0x514649fb; // "QFI\xfb"
export const QCOW2_HEADER_READ_BYTES = 4096;
/** QEMU's limit (QCOW2_MAX_BITMAP_DIRECTORY_SIZE). */
const MAX_BITMAP_DIRECTORY_BYTES = 1024 * 1024 * 64;

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
  const header: Qcow2Header = { version, virtualBytes, clusterBytes: 2 ** clusterBits, backingFile };
  const bitmapDirectory = version === 3 ? findBitmapDirectory(view, bytes.length) : undefined;
  return bitmapDirectory ? { ...header, bitmapDirectory } : header;
}

/** The header extensions follow the header (its length at offset 100), each type, length, data padded to 8 bytes. */
function findBitmapDirectory(view: DataView, available: number): Qcow2Header['bitmapDirectory'] {
  if (available < 104) return undefined;
  let offset = view.getUint32(100);
  while (offset + 8 <= available) {
    const type = view.getUint32(offset);
    const length = view.getUint32(offset + 4);
    if (type === 0) return undefined; // end of the extensions
    if (type === BITMAPS_EXTENSION && length >= 24 && offset + 8 + 24 <= available) {
      return { count: view.getUint32(offset + 8), bytes: Number(view.getBigUint64(offset + 16)), offset: Number(view.getBigUint64(offset + 24)) };
    }
    offset += 8 + Math.ceil(length / 8) * 8;
  }
  return undefined;
}

/** Pure: the granularity of each entry of a bitmap directory (QEMU's docs/interop/qcow2.txt, "Bitmap Directory"). */
export function parseBitmapDirectory(bytes: Uint8Array, count: number, where: string): number[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const granularities: number[] = [];
  let offset = 0;
  for (let index = 0; index < count; index += 1) {
    if (offset + 24 > bytes.length) throw new Qcow2HeaderError(`${where}: bitmap directory ends inside entry ${index} of ${count}`);
    const granularityBits = view.getUint8(offset + 17);
    if (granularityBits < 9 || granularityBits > 31) throw new Qcow2HeaderError(`${where}: bitmap ${index} has a granularity of 2^${granularityBits} bytes; qcow2 allows 2^9 to 2^31`);
    granularities.push(2 ** granularityBits);
    const nameBytes = view.getUint16(offset + 18);
    const extraBytes = view.getUint32(offset + 20);
    offset += Math.ceil((24 + extraBytes + nameBytes) / 8) * 8;
  }
  return granularities;
}

/** Direct reads are whole blocks at block offsets. */
const DIRECT_BLOCK_BYTES = 4096;

/**
 * Reads the header of the image at `path` (a block device or file), around
 * the page cache: another host, or QEMU here with cache=none, rewrites it (a
 * `blockresize` changes the virtual size), and a cached copy would show the
 * size it had when first read. A file system that refuses O_DIRECT (tmpfs)
 * is read through the cache, where the writer shares it.
 */
export async function readQcow2Header(path: string): Promise<Qcow2Header> {
  let handle: FileHandle;
  let direct = true;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_DIRECT).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'EINVAL') throw error;
      direct = false;
      return open(path, 'r');
    });
  } catch (error) {
    throw new Qcow2HeaderError(`cannot open ${path} to read its qcow2 header: ${(error as Error).message}`, { cause: error });
  }
  const readAt = async (offset: number, bytes: number): Promise<Buffer> => {
    if (!direct) {
      const buffer = Buffer.alloc(bytes);
      const { bytesRead } = await handle.read(buffer, 0, bytes, offset);
      return buffer.subarray(0, bytesRead);
    }
    const start = Math.floor(offset / DIRECT_BLOCK_BYTES) * DIRECT_BLOCK_BYTES;
    const end = Math.ceil((offset + bytes) / DIRECT_BLOCK_BYTES) * DIRECT_BLOCK_BYTES;
    const window = alignedBuffer(end - start);
    const { bytesRead } = await handle.read(window, 0, end - start, start);
    return Buffer.from(window.subarray(offset - start, Math.min(bytesRead, offset - start + bytes)));
  };
  try {
    const header = parseQcow2Header(await readAt(0, QCOW2_HEADER_READ_BYTES), path);
    if (!header.bitmapDirectory) return header;
    const { offset, bytes, count } = header.bitmapDirectory;
    if (bytes > MAX_BITMAP_DIRECTORY_BYTES) throw new Qcow2HeaderError(`${path}: a bitmap directory of ${bytes} bytes is more than qcow2 allows`);
    const directory = Buffer.alloc(bytes);
    (await readAt(offset, bytes)).copy(directory);
    return { ...header, bitmapGranularities: parseBitmapDirectory(directory, count, path) };
  } finally {
    await handle.close();
  }
}
