import { exchangeLine } from '../util/unix-socket-line.js';
import type { HookOutcome } from './hook.js';

/**
 * The hook's fast path: libvirtd blocks on `prepare begin` for every start and
 * incoming migration, and a node process that loads the plugin, execa, zod and
 * an XML parser spends most of its time loading them (measured: 456 ms p50 for
 * one volume, a bare node start being 56 ms). The agent has all of that loaded,
 * so the hook hands it the domain XML over the control socket and relays its
 * outcome. Only node's own modules are loaded here. No agent, an agent that
 * does not answer in time, or one that refuses (another storage domain): the
 * hook does the work itself, as before.
 */

/** A hung agent must not hold a VM start for long: the hook then does the work itself. */
export const AGENT_PREPARE_TIMEOUT_MS = 10_000;
const REPLY_LIMIT_BYTES = 64 * 1024;

export interface PrepareRequest {
  domain: string;
  xml: string;
  vg?: string;
  loopDomain?: string;
}

export function encodePrepareRequest(request: PrepareRequest): string {
  return `${JSON.stringify({ op: 'prepare-domain', ...request })}\n`;
}

/** The agent's reply line as a hook outcome; undefined for a refusal or anything that is not a well-formed reply. */
export function decodePrepareReply(line: string): HookOutcome | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const { ok, exitCode, message } = value as Record<string, unknown>;
  if (ok !== true || typeof exitCode !== 'number' || !Number.isInteger(exitCode) || exitCode < 0 || exitCode > 255) return undefined;
  if (message !== undefined && typeof message !== 'string') return undefined;
  return message === undefined ? { exitCode } : { exitCode, message };
}

/** Asks the agent listening on `socketPath`; undefined when the hook must do the work itself. */
export async function prepareThroughAgent(socketPath: string, request: PrepareRequest, timeoutMs = AGENT_PREPARE_TIMEOUT_MS): Promise<HookOutcome | undefined> {
  const exchange = await exchangeLine(socketPath, encodePrepareRequest(request), { timeoutMs, limitBytes: REPLY_LIMIT_BYTES });
  return exchange.kind === 'reply' ? decodePrepareReply(exchange.line) : undefined;
}
