/**
 * libvirt events as `virsh event --all --loop --timestamp` prints them, parsed
 * into values (pure). Lines look like:
 *   2026-11-25 02:53:49.964+0000: event 'block-threshold' for domain 'web01': dev: vda[1](/dev/loop0) 50000000 659328
 *   ... event 'io-error-reason' for domain 'web01': /dev/loop0 (virtio-disk0) pause due to enospc
 *   ... event 'lifecycle' for domain 'web01': Suspended I/O Error
 */
export type LibvirtEvent =
  | { kind: 'block-threshold'; domain: string; target: string; index: number; path: string; thresholdBytes: number; excessBytes: number }
  | { kind: 'io-error-reason'; domain: string; path: string; alias: string; action: string; reason: string }
  | { kind: 'lifecycle'; domain: string; event: string; detail: string }
  | { kind: 'other'; domain: string; name: string; detail: string };

const LINE = /^(?:\S+ \S+: )?event '([^']+)' for domain '(.*)': (.*)$/;
const THRESHOLD = /^dev: ([A-Za-z0-9_]+)\[(\d+)\]\((.*)\) (\d+) (\d+)$/;
const IO_ERROR_REASON = /^(.*) \(([^)]*)\) (\S+) due to (\S+)$/;
const LIFECYCLE = /^(\S+) (.*)$/;

export function parseEventLine(line: string): LibvirtEvent | undefined {
  const match = LINE.exec(line.trim());
  if (!match) return undefined;
  const [, name, domain, detail] = match as unknown as [string, string, string, string];
  if (name === 'block-threshold') {
    const fields = THRESHOLD.exec(detail);
    if (fields) {
      return { kind: 'block-threshold', domain, target: fields[1]!, index: Number(fields[2]), path: fields[3]!, thresholdBytes: Number(fields[4]), excessBytes: Number(fields[5]) };
    }
  } else if (name === 'io-error-reason') {
    const fields = IO_ERROR_REASON.exec(detail);
    if (fields) return { kind: 'io-error-reason', domain, path: fields[1]!, alias: fields[2]!, action: fields[3]!, reason: fields[4]! };
  } else if (name === 'lifecycle') {
    const fields = LIFECYCLE.exec(detail);
    if (fields) return { kind: 'lifecycle', domain, event: fields[1]!, detail: fields[2]! };
  }
  return { kind: 'other', domain, name, detail };
}
