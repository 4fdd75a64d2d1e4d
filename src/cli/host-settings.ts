import type { HostConfig } from '../config/host-config.js';
import type { StorageArguments } from './storage-options.js';

/** What the agent and the SPM both take from /etc/tideline/tideline.conf, flags winning. */
export interface SharedArguments extends StorageArguments {
  mailbox?: string;
  'host-id'?: number;
}

/**
 * Fills what the command line left out from the host configuration. The
 * storage domain comes whole from one place: a flag naming one overrides the
 * file's domain entirely (a VG from the file and a loop view from the flags
 * would be neither).
 */
export function withHostConfig<T extends SharedArguments>(commandLine: T, host: HostConfig | undefined): T {
  if (!host) return commandLine;
  const storageFromFlags = commandLine.vg !== undefined || commandLine.domain !== undefined;
  return {
    ...commandLine,
    ...(storageFromFlags ? {} : { ...(host.vg ? { vg: host.vg } : {}), ...(host['loop-domain'] ? { domain: host['loop-domain'] } : {}), ...(host['loop-view'] ? { 'loop-view': host['loop-view'] } : {}) }),
    ...(commandLine.mailbox === undefined && host.mailbox ? { mailbox: host.mailbox } : {}),
    ...(commandLine['host-id'] === undefined && host['host-id'] ? { 'host-id': host['host-id'] } : {}),
  };
}
