import { readFile, writeFile } from 'node:fs/promises';

/**
 * sanlock keeps a resource lease for as long as the process holding it
 * exists: its own daemon renews the host's delta lease, so a serving SPM
 * that is stopped (SIGSTOP, a frozen process) keeps the lease and no host
 * takes over. The serving process therefore writes a heartbeat file every
 * second, and its supervisor kills it (SIGKILL works on a stopped process)
 * once the heartbeat stood still for the stall timeout; sanlock frees the
 * lease the moment the process is gone, and another host acquires it.
 */
export const HEARTBEAT_INTERVAL_MS = 1_000;
export const DEFAULT_STALL_TIMEOUT_SECONDS = 10;

/** The heartbeat as written: the writer's PID and its clock (ms since the epoch), one line. */
export function encodeHeartbeat(pid: number, atMs: number): string {
  return `${pid} ${Math.floor(atMs)}\n`;
}

export function decodeHeartbeat(text: string): { pid: number; atMs: number } | undefined {
  const match = /^(\d+) (\d+)\n?$/.exec(text);
  if (!match) return undefined;
  const pid = Number(match[1]);
  const atMs = Number(match[2]);
  return Number.isSafeInteger(pid) && Number.isSafeInteger(atMs) ? { pid, atMs } : undefined;
}

/** In the serving process: beats until stopped. */
export function startHeartbeat(file: string, pid = process.pid): () => void {
  const beat = () => void writeFile(file, encodeHeartbeat(pid, Date.now())).catch(() => undefined);
  beat();
  const timer = setInterval(beat, HEARTBEAT_INTERVAL_MS);
  return () => clearInterval(timer);
}

/**
 * In the supervisor: whether the process `pid` has beaten at least once and
 * then stood still for longer than `stallTimeoutMs` (a process that has not
 * started serving yet, waiting for sanlock to grant the lease, is not stalled).
 */
export async function stalledFor(file: string, pid: number, nowMs: number): Promise<number | undefined> {
  const heartbeat = decodeHeartbeat(await readFile(file, 'utf8').catch(() => ''));
  if (!heartbeat || heartbeat.pid !== pid) return undefined;
  return nowMs - heartbeat.atMs;
}
