import type { StoragePlugin } from '../../plugins/types.js';
import { TideError } from '../errors.js';
import type { Lease } from '../lease/types.js';
import type { Runner } from '../util/runner.js';

/**
 * Fencing for an SPM that may have been stalled (SIGSTOP, a frozen VM, swap
 * storms): a process that is not dead resumes wherever it stopped, possibly
 * between its last lease check and the change it was about to make, while
 * another host already serves as SPM. Every change to the storage domain and
 * every command the SPM runs (qemu-img writing a header, blkdiscard zeroing a
 * volume) therefore asks the lease first, at the last moment, so a resumed
 * SPM stops at its next step instead of acting on a stale decision.
 */
export class LeaseLostError extends TideError {
  readonly code = 'lease-lost';
}

/** A rejected promise, never a synchronous throw: callers chain .catch() on what they get. */
function refused(action: string): Promise<never> {
  return Promise.reject(new LeaseLostError(`the SPM lease is no longer held; not carrying out ${action} (another host may be SPM now)`));
}

/** The plugin methods that change the storage domain's metadata. */
const CHANGES: ReadonlySet<PropertyKey> = new Set<keyof StoragePlugin>(['create', 'remove', 'setTag', 'extend', 'reduce']);

/** What the SPM changes in the domain goes through this; reads pass straight through. */
export function fencePlugin(plugin: StoragePlugin, lease: Lease): StoragePlugin {
  return new Proxy(plugin, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== 'function') return value;
      const method = value as (...args: unknown[]) => unknown;
      if (!CHANGES.has(property)) return method.bind(target);
      return (...args: unknown[]) => (lease.held ? method.apply(target, args) : refused(`${String(property)} of ${String(args[0])}`));
    },
  });
}

export function fenceRunner(run: Runner, lease: Lease): Runner {
  return (command, args, options) => (lease.held ? run(command, args, options) : refused(`${command} ${args.join(' ')}`));
}
