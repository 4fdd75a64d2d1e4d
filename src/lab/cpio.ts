/**
 * The "newc" cpio format the kernel unpacks as an initramfs
 * (Documentation/driver-api/early-userspace/buffer-format.rst). Pure: entries
 * in, bytes out, so the lab needs no cpio binary and tests can read it back.
 */
export type CpioEntry =
  | { kind: 'directory'; path: string; mode?: number }
  | { kind: 'file'; path: string; data: Uint8Array; mode?: number }
  | { kind: 'symlink'; path: string; target: string }
  | { kind: 'char-device'; path: string; major: number; minor: number; mode?: number };

const MAGIC = '070701';
const TRAILER = 'TRAILER!!!';
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
const encoder = new TextEncoder();

export function encodeCpio(entries: readonly CpioEntry[]): Uint8Array {
  const parts: Uint8Array[] = [];
  let inode = 1;
  let offset = 0;
  const push = (bytes: Uint8Array) => {
    parts.push(bytes);
    offset += bytes.length;
  };
  const pad = () => {
    const remainder = offset % 4;
    if (remainder !== 0) push(new Uint8Array(4 - remainder));
  };
  const record = (name: string, mode: number, data: Uint8Array, rdev = { major: 0, minor: 0 }, number = inode++) => {
    const nameBytes = encoder.encode(`${name}\0`);
    const fields = [number, mode, 0, 0, 1, 0, data.length, 0, 0, rdev.major, rdev.minor, nameBytes.length, 0];
    push(encoder.encode(MAGIC + fields.map(hex8).join('')));
    push(nameBytes);
    pad();
    push(data);
    pad();
  };

  for (const entry of entries) {
    const name = entry.path.replace(/^\/+/, '');
    switch (entry.kind) {
      case 'directory':
        record(name, S_IFDIR | (entry.mode ?? 0o755), new Uint8Array());
        break;
      case 'file':
        record(name, S_IFREG | (entry.mode ?? 0o644), entry.data);
        break;
      case 'symlink':
        record(name, S_IFLNK | 0o777, encoder.encode(entry.target));
        break;
      case 'char-device':
        record(name, S_IFCHR | (entry.mode ?? 0o600), new Uint8Array(), { major: entry.major, minor: entry.minor });
        break;
    }
  }
  record(TRAILER, 0, new Uint8Array(), undefined, 0);
  return Buffer.concat(parts);
}

export interface DecodedCpioEntry {
  name: string;
  mode: number;
  data: Uint8Array;
  rdevMajor: number;
  rdevMinor: number;
}

/** Reads back what encodeCpio wrote (and any newc archive); stops at the trailer. */
export function decodeCpio(bytes: Uint8Array): DecodedCpioEntry[] {
  const decoder = new TextDecoder();
  const entries: DecodedCpioEntry[] = [];
  let offset = 0;
  const align = (value: number) => (value + 3) & ~3;
  while (offset + 110 <= bytes.length) {
    const header = decoder.decode(bytes.subarray(offset, offset + 110));
    if (!header.startsWith(MAGIC)) throw new Error(`cpio: bad magic at offset ${offset}`);
    const field = (index: number) => parseInt(header.slice(6 + index * 8, 14 + index * 8), 16);
    const nameSize = field(11);
    const dataSize = field(6);
    const nameStart = offset + 110;
    const name = decoder.decode(bytes.subarray(nameStart, nameStart + nameSize - 1));
    const dataStart = align(nameStart + nameSize);
    if (name === TRAILER) break;
    entries.push({ name, mode: field(1), data: bytes.subarray(dataStart, dataStart + dataSize), rdevMajor: field(9), rdevMinor: field(10) });
    offset = align(dataStart + dataSize);
  }
  return entries;
}

function hex8(value: number): string {
  return value.toString(16).padStart(8, '0');
}
