import type { QmpMessage, QmpVersion } from './messages.js';

/**
 * QMP framing: one JSON object per line ("\r\n" terminated). Pure functions
 * over bytes, no sockets, so they can be fuzzed.
 */

/** A peer that never ends a line must not grow our memory without bound. */
export const MAX_LINE_BYTES = 16 * 1024 * 1024;

const NEWLINE = 0x0a;
const decoder = new TextDecoder('utf-8', { fatal: false });
const encoder = new TextEncoder();

export interface Garbage {
  kind: 'garbage';
  line: string;
  reason: string;
}

export type Parsed = QmpMessage | Garbage;

export function encodeCommand(execute: string, args: Record<string, unknown> | undefined, id: string): Uint8Array {
  const message: Record<string, unknown> = { execute, id };
  if (args !== undefined) message.arguments = args;
  return encoder.encode(`${JSON.stringify(message)}\r\n`);
}

/** Turns one line (without its terminator) into a typed message, or says why it is garbage. */
export function parseLine(line: string): Parsed {
  const text = line.trim();
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return garbage(line, `not JSON: ${(error as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return garbage(line, 'not a JSON object');
  const object = value as Record<string, unknown>;
  const id = typeof object.id === 'string' ? object.id : object.id === undefined ? undefined : JSON.stringify(object.id);

  if ('QMP' in object) {
    const qmp = object.QMP as Record<string, unknown> | null;
    if (typeof qmp !== 'object' || qmp === null) return garbage(line, 'greeting without a QMP object');
    const capabilities = Array.isArray(qmp.capabilities) ? qmp.capabilities.map(String) : [];
    return { kind: 'greeting', version: qmp.version as QmpVersion, capabilities };
  }
  if ('return' in object) return { kind: 'return', id, value: object.return };
  if ('error' in object) {
    const error = object.error as Record<string, unknown> | null;
    if (typeof error !== 'object' || error === null) return garbage(line, 'error reply without an error object');
    return { kind: 'error', id, errorClass: String(error.class ?? 'GenericError'), description: String(error.desc ?? '') };
  }
  if (typeof object.event === 'string') {
    const timestamp = object.timestamp as { seconds?: number; microseconds?: number } | undefined;
    const data = typeof object.data === 'object' && object.data !== null ? (object.data as Record<string, unknown>) : {};
    const timestampMicros = (timestamp?.seconds ?? 0) * 1_000_000 + (timestamp?.microseconds ?? 0);
    return { kind: 'event', event: object.event, data, timestampMicros };
  }
  return garbage(line, 'neither greeting, reply nor event');
}

function garbage(line: string, reason: string): Garbage {
  return { kind: 'garbage', line: line.length > 200 ? `${line.slice(0, 200)}…` : line, reason };
}

/**
 * Accumulates bytes and yields complete lines. Holds only the unfinished tail,
 * so a message split across any number of chunks, or many messages in one
 * chunk, come out the same.
 */
export class LineSplitter {
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;

  constructor(private readonly maxLineBytes = MAX_LINE_BYTES) {}

  push(chunk: Uint8Array): { lines: string[]; overflowed: boolean } {
    const lines: string[] = [];
    let overflowed = false;
    let start = 0;
    for (let index = chunk.indexOf(NEWLINE); index !== -1; index = chunk.indexOf(NEWLINE, start)) {
      lines.push(this.takeLine(chunk.subarray(start, index)));
      start = index + 1;
    }
    if (start < chunk.length) {
      const tail = chunk.subarray(start);
      this.pending.push(tail.slice());
      this.pendingBytes += tail.length;
      if (this.pendingBytes > this.maxLineBytes) {
        this.pending = [];
        this.pendingBytes = 0;
        overflowed = true;
      }
    }
    return { lines: lines.filter((line) => line.trim() !== ''), overflowed };
  }

  private takeLine(last: Uint8Array): string {
    if (this.pending.length === 0) return decoder.decode(last);
    const whole = Buffer.concat([...this.pending, last]);
    this.pending = [];
    this.pendingBytes = 0;
    return decoder.decode(whole);
  }
}

/** Splitter and parser together: bytes in, messages and garbage out. */
export class QmpDecoder {
  private readonly splitter: LineSplitter;

  constructor(private readonly maxLineBytes = MAX_LINE_BYTES) {
    this.splitter = new LineSplitter(maxLineBytes);
  }

  push(chunk: Uint8Array): Parsed[] {
    const { lines, overflowed } = this.splitter.push(chunk);
    const parsed = lines.map(parseLine);
    if (overflowed) parsed.push({ kind: 'garbage', line: '', reason: `line longer than ${this.maxLineBytes} bytes dropped` });
    return parsed;
  }
}
