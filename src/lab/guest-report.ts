import { GUEST_MARKER } from './guest-init.js';

/** What the lab guest says on its console, as values (pure). */
export type GuestLine =
  | { kind: 'ready'; units: number }
  | { kind: 'progress'; writtenMib: number; disk: string }
  | { kind: 'written'; seconds: number }
  | { kind: 'read'; seconds: number }
  | { kind: 'mismatch'; unit: number; part: string }
  /** `round`: a disk read back again once the host plugged in vdc (tideline.linger=1); absent for the first reading. */
  | { kind: 'result'; units: number; bad: number; bodyMd5: string; disk: string; round?: number }
  /** The guest waits for its disk to grow before writing past its end (tideline.grow_wait=1). */
  | { kind: 'waiting-for-growth'; disk: string; bytes: number }
  /** Everything written and verified; the guest stays up (tideline.linger=1). */
  | { kind: 'done' }
  | { kind: 'error'; detail: string };

export function parseGuestLine(line: string): GuestLine | undefined {
  const start = line.indexOf(`${GUEST_MARKER} `);
  if (start === -1) return undefined;
  const [word, ...rest] = line.slice(start + GUEST_MARKER.length + 1).trim().split(/\s+/);
  const fields = Object.fromEntries(rest.map((pair) => pair.split('=') as [string, string]));
  const number = (key: string) => Number(fields[key] ?? Number.NaN);
  switch (word) {
    case 'ready':
      return { kind: 'ready', units: number('units') };
    case 'progress':
      return { kind: 'progress', writtenMib: number('written_mib'), disk: fields.disk ?? 'vda' };
    case 'written':
      return { kind: 'written', seconds: number('centiseconds') / 100 };
    case 'read':
      return { kind: 'read', seconds: number('centiseconds') / 100 };
    case 'mismatch':
      return { kind: 'mismatch', unit: number('unit'), part: fields.part ?? '' };
    case 'result':
      return { kind: 'result', units: number('units'), bad: number('bad'), bodyMd5: fields.body_md5 ?? '', disk: fields.disk ?? 'vda', ...(fields.round ? { round: number('round') } : {}) };
    case 'waiting-for-growth':
      return { kind: 'waiting-for-growth', disk: fields.disk ?? 'vda', bytes: number('bytes') };
    case 'done':
      return { kind: 'done' };
    case 'error':
      return { kind: 'error', detail: rest.join(' ') };
    default:
      return undefined;
  }
}
