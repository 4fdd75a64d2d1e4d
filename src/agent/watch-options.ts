import type { Logger } from 'pino';
import type { StoragePlugin } from '../../plugins/types.js';
import type { PolicySettings } from '../monitor/policy.js';
import type { Extender, MigrationPeers } from '../monitor/ports.js';
import type { Clock } from '../util/clock.js';

/** What every way of watching VMs (QMP sockets, libvirt) needs from the agent. */
export interface WatchOptions {
  plugin: StoragePlugin;
  extender: Extender;
  /** Host-wide policy. */
  policy: PolicySettings;
  /** Admin's limit for every drive, below the qcow2 cap. */
  maxSizeBytes?: number;
  clock: Clock;
  logger: Logger;
  pollIntervalMs?: number;
  /** The other host of a live migration, through the shared mailbox (src/mailbox/migration-peers.ts). */
  peers?: MigrationPeers;
}
