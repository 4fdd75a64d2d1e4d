import { InvalidConfigError } from '../errors.js';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
export const TiB = 1024 * GiB;

const UNITS: Record<string, number> = {
  '': 1, b: 1,
  k: KiB, kb: KiB, kib: KiB,
  m: MiB, mb: MiB, mib: MiB,
  g: GiB, gb: GiB, gib: GiB,
  t: GiB * KiB, tb: GiB * KiB, tib: GiB * KiB,
};

/** Parses "256M", "2.5GiB", "4096" into bytes. Units are binary, as in LVM and qemu-img. */
export function parseSize(text: string | number, what = 'size'): number {
  if (typeof text === 'number') {
    if (!Number.isSafeInteger(text) || text < 0) throw new InvalidConfigError(`${what}: ${text} is not a whole number of bytes`);
    return text;
  }
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = match ? UNITS[match[2]!.toLowerCase()] : undefined;
  if (!match || unit === undefined) {
    throw new InvalidConfigError(`${what}: cannot read "${text}" as a size; write bytes or a number with K, M, G or T (binary units), e.g. 256M`);
  }
  return Math.round(Number(match[1]) * unit);
}

export function formatSize(bytes: number): string {
  const abs = Math.abs(bytes);
  if (abs >= GiB) return `${(bytes / GiB).toFixed(2)} GiB`;
  if (abs >= MiB) return `${(bytes / MiB).toFixed(1)} MiB`;
  if (abs >= KiB) return `${(bytes / KiB).toFixed(1)} KiB`;
  return `${bytes} B`;
}

export function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}

export function alignDown(value: number, alignment: number): number {
  return Math.floor(value / alignment) * alignment;
}
