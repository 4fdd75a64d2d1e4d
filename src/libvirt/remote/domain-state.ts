import type { DomainState } from '../domain-facts.js';

/**
 * virDomainState and its reasons in the words `virsh domstate --reason`
 * prints (tools/virsh-domain-monitor.c), so a state read over the socket is
 * the same DomainState the monitor gets from virsh. Pure.
 */
const STATES = ['no state', 'running', 'idle', 'paused', 'in shutdown', 'shut off', 'crashed', 'pmsuspended'];

const REASONS: ReadonlyArray<readonly string[]> = [
  ['unknown'],
  ['unknown', 'booted', 'migrated', 'restored', 'from snapshot', 'unpaused', 'migration canceled', 'save canceled', 'event wakeup', 'crashed', 'post-copy', 'post-copy failed'],
  ['unknown'],
  ['unknown', 'user', 'migrating', 'saving', 'dumping', 'I/O error', 'watchdog', 'from snapshot', 'shutting down', 'creating snapshot', 'crashed', 'starting up', 'post-copy', 'post-copy failed', 'api error'],
  ['unknown', 'user'],
  ['unknown', 'shutdown', 'destroyed', 'crashed', 'migrated', 'saved', 'failed', 'from snapshot', 'daemon'],
  ['unknown', 'panicked'],
  ['unknown'],
];

export function describeDomainState(state: number, reason: number): DomainState {
  return { state: STATES[state] ?? 'no state', reason: REASONS[state]?.[reason] ?? 'unknown' };
}
