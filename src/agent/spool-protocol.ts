import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { HookOutcome } from '../hook/hook.js';
import { isAlive } from '../util/process-alive.js';

/**
 * The libvirt hook's way to tell the agent about a domain event without
 * starting node: the shell hook writes domain, operation and sub-operation,
 * one per line (a domain name may hold spaces, never a newline), into a file
 * of this directory (written under a dot name, then renamed, so a file
 * that appears is whole), and the agent rescans. libvirtd waits for the hook on
 * every event; a write and a rename cost a few milliseconds, a node start
 * more than a hundred.
 */
export const DEFAULT_HOOK_SPOOL = '/run/tideline/hook-events';

/**
 * `prepare begin` goes the same way when an agent runs (hooks/qemu): libvirtd
 * waits for it on every start and incoming migration, and a node start alone
 * costs more than the whole of what the agent does for it. The shell writes
 * a `<pid>.prepare` file (domain, operation, sub-operation, the FIFO it waits
 * on, the storage domain its configuration names, then the domain XML), and
 * the agent answers with one line into that FIFO. The agent writes its PID into
 * AGENT_MARK while it follows the spool, so the shell hands work only to a live
 * agent that can answer, and stops waiting when that process is gone.
 */
export const AGENT_MARK = '.agent';
export const PREPARE_SUFFIX = '.prepare';
/** One write of at most PIPE_BUF bytes into a FIFO is never split, so the hook's `head -n 1` sees the whole line. */
const REPLY_LINE_LIMIT = 4_000;

/** Whether a live agent follows `directory` and answers the hook's prepare there (what the shell hook checks). */
export async function agentFollowsSpool(directory: string): Promise<boolean> {
  const pid = Number((await readFile(path.join(directory, AGENT_MARK), 'utf8').catch(() => '')).trim());
  return Number.isInteger(pid) && pid > 0 && isAlive(pid);
}

export interface SpooledPrepare {
  domain: string;
  /** The FIFO the hook waits on. */
  replyPath: string;
  vg?: string;
  loopDomain?: string;
  xml: string;
}

/** One `.prepare` file's text; undefined for anything the shell hook would not write. */
export function parsePrepareRequest(text: string): SpooledPrepare | undefined {
  const lines = text.split('\n');
  if (lines.length < 7) return undefined;
  const [domain, operation, subOperation, replyPath, vg, loopDomain] = lines as [string, string, string, string, string, string];
  if (!domain || operation !== 'prepare' || subOperation !== 'begin' || !path.isAbsolute(replyPath)) return undefined;
  const xml = lines.slice(6).join('\n').replace(/\n$/, '');
  return { domain, replyPath, ...(vg ? { vg } : {}), ...(loopDomain ? { loopDomain } : {}), xml };
}

/**
 * The agent's answer, one line: the hook's exit code and message, or `-` and
 * why the hook must do the work itself (another storage domain, a failure).
 */
export function encodePrepareReply(answer: { outcome: HookOutcome } | { declined: string }): string {
  const text = 'outcome' in answer ? `${answer.outcome.exitCode}${answer.outcome.message ? ` ${answer.outcome.message}` : ''}` : `- ${answer.declined}`;
  const line = text.replace(/[\r\n]+/g, ' ');
  return `${Buffer.byteLength(line) > REPLY_LINE_LIMIT ? `${Buffer.from(line).subarray(0, REPLY_LINE_LIMIT).toString('utf8').replace(/\uFFFD$/, '')}...` : line}\n`;
}

export interface HookEvent {
  domain: string;
  operation: string;
  subOperation: string;
}

/** One spool file's text; undefined for anything that is not three newline-terminated lines. */
export function parseHookEvent(text: string): HookEvent | undefined {
  const fields = text.split('\n');
  if (fields.length !== 4 || fields[3] !== '') return undefined;
  const [domain, operation, subOperation] = fields as [string, string, string];
  return domain && operation ? { domain, operation, subOperation } : undefined;
}
