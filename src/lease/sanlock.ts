import { HEARTBEAT_INTERVAL_MS, stalledFor } from './stall-watchdog.js';
import { EventEmitter } from 'node:events';
import { execa, type ResultPromise } from 'execa';
import type { Logger } from 'pino';
import { TideError, errorMessage } from '../errors.js';
import type { Runner } from '../util/runner.js';
import { sleep, type Clock } from '../util/clock.js';
import type { Lease, LeaseEvents } from './types.js';

/** Logged each time the serving process under the lease ends and the supervisor asks for the lease again (tests wait for it). */
export const SANLOCK_TERM_ENDED_MESSAGE = 'SPM process under the sanlock lease ended (lease held elsewhere, lost, or process ended); trying again';

/**
 * The sanlock lease backend. The SPM resource is a sanlock paxos lease in a
 * lockspace on the shared storage (an `ids` volume for the host delta leases,
 * a `leases` volume for the resource). The serving process is started by
 * `sanlock client command`, which registers, acquires the resource and then
 * execs tideline in the same process: the lease belongs to that process, and
 * when sanlock can no longer renew the lockspace it kills the process. So the
 * SPM stops acting the moment the lease is lost, enforced from outside, even
 * if the process is stuck.
 */
export class SanlockError extends TideError {
  readonly code = 'sanlock';
}

export const SPM_RESOURCE = 'tideline-spm';
const SANLOCK_TIMEOUT_MS = 30_000;
/** Joining a lockspace waits out the other hosts' delta lease timeouts: ~20 s with default timeouts. */
const ADD_LOCKSPACE_TIMEOUT_MS = 180_000;
const NAME = /^[A-Za-z0-9_.-]{1,48}$/;

export interface SanlockPlacement {
  lockspace: string;
  hostId: number;
  idsPath: string;
  leasesPath: string;
}

export function lockspaceSpec(placement: SanlockPlacement, hostId = placement.hostId): string {
  if (!NAME.test(placement.lockspace)) throw new SanlockError(`lockspace name '${placement.lockspace}' must be 1-48 letters, digits, '_', '.' or '-'`);
  for (const file of [placement.idsPath, placement.leasesPath]) {
    if (file.includes(':') || !file.startsWith('/')) throw new SanlockError(`sanlock volume path '${file}' must be absolute and contain no ':'`);
  }
  return `${placement.lockspace}:${hostId}:${placement.idsPath}:0`;
}

export function resourceSpec(placement: SanlockPlacement): string {
  lockspaceSpec(placement);
  return `${placement.lockspace}:${SPM_RESOURCE}:${placement.leasesPath}:0`;
}

/** Writes an empty lockspace and SPM resource (once, when the storage domain is created). */
export async function initSanlock(run: Runner, placement: SanlockPlacement): Promise<void> {
  await run('sanlock', ['client', 'init', '-s', lockspaceSpec(placement, 0)], { timeoutMs: SANLOCK_TIMEOUT_MS });
  await run('sanlock', ['client', 'init', '-r', resourceSpec(placement)], { timeoutMs: SANLOCK_TIMEOUT_MS });
}

/** Joins the lockspace with this host's id unless it already has; true when it had to join. */
export async function joinLockspace(run: Runner, placement: SanlockPlacement, ioTimeoutSeconds?: number): Promise<boolean> {
  const spec = lockspaceSpec(placement);
  const inquiry = await run('sanlock', ['client', 'inq_lockspace', '-s', spec], { timeoutMs: SANLOCK_TIMEOUT_MS, acceptExitCodes: [1] });
  if (inquiry.exitCode === 0) return false;
  const timeout = ioTimeoutSeconds ? ['-o', String(ioTimeoutSeconds)] : [];
  await run('sanlock', ['client', 'add_lockspace', ...timeout, '-s', spec], { timeoutMs: ADD_LOCKSPACE_TIMEOUT_MS });
  return true;
}

/** Whether the sanlock daemon answers here (`sanlock client status`); false where it is missing or stopped. */
export async function sanlockDaemonRunning(run: Runner): Promise<boolean> {
  try {
    await run('sanlock', ['client', 'status'], { timeoutMs: SANLOCK_TIMEOUT_MS });
    return true;
  } catch {
    return false;
  }
}

export async function leaveLockspace(run: Runner, placement: SanlockPlacement): Promise<void> {
  await run('sanlock', ['client', 'rem_lockspace', '-s', lockspaceSpec(placement)], { timeoutMs: SANLOCK_TIMEOUT_MS, acceptExitCodes: [1] });
}

/**
 * Runs `command` under the SPM lease again and again: whenever sanlock cannot
 * acquire it (another host's SPM holds it) or the holder ends (lease lost,
 * killed, crashed), it tries again after `retryMs`. Resolves when `signal`
 * aborts, after stopping the current holder.
 */
export async function superviseUnderLease(options: {
  placement: SanlockPlacement;
  command: readonly string[];
  clock: Clock;
  logger: Logger;
  signal: AbortSignal;
  retryMs?: number;
  onStart?: (child: ResultPromise) => void;
  /** Runs the sanlock client for lockspace checks. */
  run: Runner;
  /** io_timeout to join with again after the lockspace was lost. */
  ioTimeoutSeconds?: number;
  /** The serving process's heartbeat file and how long it may stand still (src/lease/stall-watchdog.ts). */
  watchdog?: { heartbeatFile: string; stallTimeoutMs: number };
}): Promise<void> {
  const { placement, command, logger, signal } = options;
  const resource = resourceSpec(placement);
  while (!signal.aborted) {
    const child = execa('sanlock', ['client', 'command', '-r', resource, '-c', ...command], { reject: false, stdin: 'ignore', stdout: 'inherit', stderr: 'inherit' });
    options.onStart?.(child);
    const stop = () => child.kill('SIGTERM');
    signal.addEventListener('abort', stop, { once: true });
    const watching = options.watchdog ? watchForStall(child, options.watchdog, logger) : undefined;
    const result = await child;
    watching?.cancel();
    signal.removeEventListener('abort', stop);
    if (signal.aborted) break;
    logger.info({ exitCode: result.exitCode, signal: result.signal }, SANLOCK_TERM_ENDED_MESSAGE);
    await sleep(options.clock, options.retryMs ?? 2_000);
    if (signal.aborted) break;
    // When this host's delta lease could not be renewed in time, sanlock killed
    // the holder and dropped the whole lockspace: every acquire then fails until
    // the host joins again, so a lost lockspace would keep this host out of the
    // SPM election for good.
    try {
      if (await joinLockspace(options.run, placement, options.ioTimeoutSeconds)) {
        logger.warn({ lockspace: placement.lockspace, hostId: placement.hostId, reason: 'this host had left the lockspace (its delta lease lapsed)' }, 'joined the sanlock lockspace again');
      }
    } catch (error) {
      logger.error({ lockspace: placement.lockspace, err: errorMessage(error) }, describeSanlockFailure(error));
    }
  }
}

/** Kills the holder once its heartbeat stood still too long: sanlock then frees the lease for another host. */
function watchForStall(child: ResultPromise, watchdog: { heartbeatFile: string; stallTimeoutMs: number }, logger: Logger): { cancel(): void } {
  const timer = setInterval(() => {
    if (child.pid === undefined) return;
    void stalledFor(watchdog.heartbeatFile, child.pid, Date.now()).then((stillMs) => {
      if (stillMs === undefined || stillMs <= watchdog.stallTimeoutMs) return;
      logger.error({ pid: child.pid, stalledMs: stillMs, stallTimeoutMs: watchdog.stallTimeoutMs }, 'the SPM process holding the sanlock lease stopped beating (stopped or frozen): killed, so that sanlock frees the lease for another host');
      child.kill('SIGKILL');
    });
  }, HEARTBEAT_INTERVAL_MS);
  return { cancel: () => clearInterval(timer) };
}

/**
 * The lease as seen from inside the process `sanlock client command` started:
 * it is held for as long as this process lives, because sanlock kills the
 * process when the lease is lost.
 */
export class HeldBySanlock extends EventEmitter<LeaseEvents> implements Lease {
  readonly held = true;

  async acquire(): Promise<void> {
    this.emit('acquired');
  }

  async release(): Promise<void> {
    // Ending the process releases the sanlock lease.
  }

  async close(): Promise<void> {}
}

export function describeSanlockFailure(error: unknown): string {
  return `sanlock failed: ${errorMessage(error)}; is the sanlock daemon running (systemctl status sanlock)?`;
}
