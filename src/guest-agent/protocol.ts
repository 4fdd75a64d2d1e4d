import { z } from 'zod';
import { LineSplitter } from '../qmp/framing.js';

/**
 * The QEMU guest agent's wire protocol (qga/qapi-schema.json): one JSON
 * object per line each way, no greeting. `guest-sync-delimited` answers with
 * a 0xFF byte before its reply, which marks where a fresh reply starts: bytes
 * left over from requests sent before the agent was up are dropped there.
 * Pure functions over bytes, kept apart from the socket so they can be fuzzed.
 */
export const SYNC_DELIMITER = 0xff;

const encoder = new TextEncoder();

export type GuestAgentReply =
  | { kind: 'return'; value: unknown }
  | { kind: 'error'; errorClass: string; description: string }
  | { kind: 'garbage'; line: string; reason: string };

export function encodeRequest(execute: string, args?: Record<string, unknown>): Uint8Array {
  return encoder.encode(`${JSON.stringify(args === undefined ? { execute } : { execute, arguments: args })}\n`);
}

export function parseReply(line: string): GuestAgentReply {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (error) {
    return { kind: 'garbage', line: line.slice(0, 200), reason: `not JSON: ${(error as Error).message}` };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { kind: 'garbage', line: line.slice(0, 200), reason: 'not a JSON object' };
  const object = value as Record<string, unknown>;
  if ('return' in object) return { kind: 'return', value: object.return };
  const error = object.error as Record<string, unknown> | undefined;
  if (typeof error === 'object' && error !== null) return { kind: 'error', errorClass: String(error.class ?? 'GenericError'), description: String(error.desc ?? '') };
  return { kind: 'garbage', line: line.slice(0, 200), reason: 'neither a return nor an error' };
}

/** Bytes in, replies out; a 0xFF byte discards any unfinished line before it. */
export class ReplyReader {
  private splitter = new LineSplitter();

  push(chunk: Uint8Array): GuestAgentReply[] {
    const replies: GuestAgentReply[] = [];
    let start = 0;
    for (let index = 0; index <= chunk.length; index += 1) {
      if (index < chunk.length && chunk[index] !== SYNC_DELIMITER) continue;
      for (const line of this.splitter.push(chunk.subarray(start, index)).lines) {
        if (line.trim() !== '') replies.push(parseReply(line));
      }
      if (index < chunk.length) this.splitter = new LineSplitter();
      start = index + 1;
    }
    return replies;
  }
}

const execStarted = z.object({ pid: z.number().int() });
const execStatus = z.object({
  exited: z.boolean(),
  exitcode: z.number().int().optional(),
  signal: z.number().int().optional(),
  'out-data': z.string().optional(),
  'err-data': z.string().optional(),
  'out-truncated': z.boolean().optional(),
  'err-truncated': z.boolean().optional(),
});

export interface ExecStatus {
  exited: boolean;
  exitCode: number | undefined;
  /** The signal that ended the process (the guest's `timeout` ends a command that overran with SIGTERM). */
  signal: number | undefined;
  stdout: string;
  stderr: string;
  truncated: boolean;
}

export function decodeExecStarted(value: unknown): number {
  return execStarted.parse(value).pid;
}

export function decodeExecStatus(value: unknown): ExecStatus {
  const status = execStatus.parse(value);
  return {
    exited: status.exited,
    exitCode: status.exitcode,
    signal: status.signal,
    stdout: Buffer.from(status['out-data'] ?? '', 'base64').toString('utf8'),
    stderr: Buffer.from(status['err-data'] ?? '', 'base64').toString('utf8'),
    truncated: Boolean(status['out-truncated'] || status['err-truncated']),
  };
}
