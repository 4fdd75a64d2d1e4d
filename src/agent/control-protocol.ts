import { z } from 'zod';

/**
 * The agent's local control socket: one JSON request line, one JSON reply
 * line. It lets `tideline volume` on this host reach the SPM through the
 * agent's own mailbox slot, which must have one writer only.
 */
export { DEFAULT_CONTROL_SOCKET } from './control-socket-path.js';

export const controlRequestSchema = z.discriminatedUnion('op', [
  z.object({ op: z.literal('create'), volume: z.string().min(1), sizeBytes: z.number().int().positive(), virtualBytes: z.number().int().positive() }),
  z.object({ op: z.literal('create-child'), volume: z.string().min(1), parent: z.string().min(1), sizeBytes: z.number().int().positive() }),
  z.object({ op: z.literal('extend'), volume: z.string().min(1), sizeBytes: z.number().int().positive() }),
  z.object({ op: z.literal('reparent'), volume: z.string().min(1), parent: z.string().min(1) }),
  z.object({ op: z.literal('reduce'), volume: z.string().min(1), freeTargetBytes: z.number().int().nonnegative() }),
  z.object({ op: z.literal('resize'), volume: z.string().min(1), virtualBytes: z.number().int().positive() }),
  z.object({ op: z.literal('delete'), volume: z.string().min(1) }),
  z.object({ op: z.literal('activate'), volume: z.string().min(1) }),
  z.object({ op: z.literal('deactivate'), volume: z.string().min(1) }),
  // The libvirt hook's `prepare begin`, done by the agent (src/hook/agent-prepare.ts): the storage domain the hook's configuration names, so an agent of another domain refuses.
  z.object({ op: z.literal('prepare-domain'), domain: z.string().min(1), xml: z.string(), vg: z.string().min(1).optional(), loopDomain: z.string().min(1).optional() }),
]);

export type ControlRequest = z.infer<typeof controlRequestSchema>;

/** `path`: the block device of an activated volume on this host; `exitCode` and `message`: the hook's outcome of a prepare-domain. */
export type ControlReply = { ok: true; sizeBytes?: number; path?: string; exitCode?: number; message?: string; vm?: string } | { ok: false; code: string; message: string };

export function encodeControlMessage(message: ControlRequest | ControlReply): string {
  return `${JSON.stringify(message)}\n`;
}

export function decodeControlRequest(line: string): ControlRequest | { error: string } {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return { error: 'request is not JSON' };
  }
  const parsed = controlRequestSchema.safeParse(value);
  return parsed.success ? parsed.data : { error: `bad request: ${parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ')}` };
}
