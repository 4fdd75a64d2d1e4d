import Table from 'cli-table3';
import type { CommandModule } from 'yargs';
import { leaseSource, observeCluster, type LeaseSource } from '../../cluster/cluster-reader.js';
import type { ClusterView, HostView, SpmDoorbell } from '../../cluster/cluster-view.js';
import { DEFAULT_CONFIG_FILE, loadHostConfig } from '../../config/host-config.js';
import { InvalidConfigError } from '../../errors.js';
import { formatEndpoint } from '../../util/address-text.js';
import { execaRunner } from '../../util/runner.js';
import { formatSize } from '../../util/sizes.js';

interface ClusterArguments {
  config: string;
  mailbox?: string;
  lease?: string;
  'lease-backend'?: 'storage' | 'sanlock';
  ids?: string;
  lockspace?: string;
  observe?: number;
  json: boolean;
}

/** The built-in lease renews every expiry/15 (1 s at the default) and inventories every 5 s: 6 s sees both move. */
const STORAGE_OBSERVE_SECONDS = 6;
/** sanlock renews a delta lease every two io_timeouts (20 s at its default). */
const SANLOCK_OBSERVE_SECONDS = 25;

export const clusterCommand: CommandModule<object, ClusterArguments> = {
  command: 'cluster',
  describe: 'Show the cluster as the shared storage sees it: the SPM, every host and its last sign of life, requests waiting, the last served and refused (any host; no daemon needed)',
  builder: (yargs) =>
    yargs
      .option('config', { type: 'string', default: process.env.TIDELINE_CONFIG ?? DEFAULT_CONFIG_FILE, describe: 'Host configuration: mailbox, lease, lease-backend, ids, lockspace' })
      .option('mailbox', { type: 'string', describe: 'Mailbox volume (config: mailbox)' })
      .option('lease', { type: 'string', describe: 'The built-in lease volume, or the sanlock resource volume (config: lease)' })
      .option('lease-backend', { choices: ['storage', 'sanlock'] as const, describe: 'How the SPM lease is held (config: lease-backend; default storage)' })
      .option('ids', { type: 'string', describe: 'sanlock: the lockspace volume (config: ids)' })
      .option('lockspace', { type: 'string', describe: 'sanlock: lockspace name (config: lockspace)' })
      .option('observe', { type: 'number', describe: `Seconds between the two reads that tell live hosts from silent ones (default ${STORAGE_OBSERVE_SECONDS}; ${SANLOCK_OBSERVE_SECONDS} with sanlock)` })
      .option('json', { type: 'boolean', default: false }),
  handler: async (argv) => {
    const host = await loadHostConfig(argv.config);
    const mailboxPath = argv.mailbox ?? host?.mailbox;
    if (!mailboxPath) throw new InvalidConfigError(`name the mailbox volume: --mailbox PATH, or 'mailbox' in ${argv.config}`);
    const leaseSource = resolveLease(argv, host);
    const observeSeconds = argv.observe ?? (leaseSource?.kind === 'sanlock' ? SANLOCK_OBSERVE_SECONDS : STORAGE_OBSERVE_SECONDS);
    if (!(observeSeconds >= 0.1 && observeSeconds <= 600)) throw new InvalidConfigError(`--observe ${observeSeconds} must be between 0.1 and 600 seconds`);
    const view = await observeCluster(mailboxPath, leaseSource, observeSeconds, (message) => {
      if (!argv.json) process.stderr.write(`${message}\n`);
    });
    if (argv.json) process.stdout.write(`${JSON.stringify(view, null, 2)}\n`);
    else process.stdout.write(renderCluster(view));
  },
};

function resolveLease(argv: ClusterArguments, host: Awaited<ReturnType<typeof loadHostConfig>>): LeaseSource | undefined {
  const lease = argv.lease ?? host?.lease;
  if (!lease) return undefined;
  const ids = argv.ids ?? host?.ids;
  const backend = argv['lease-backend'] ?? host?.['lease-backend'] ?? 'storage';
  if (backend === 'sanlock' && !ids) throw new InvalidConfigError(`with sanlock, name the lockspace volume: --ids PATH, or 'ids' in ${argv.config}`);
  return leaseSource({ lease, backend, ...(ids ? { ids } : {}), ...(argv.lockspace ?? host?.lockspace ? { lockspace: (argv.lockspace ?? host?.lockspace)! } : {}) }, execaRunner);
}

function ago(ms: number): string {
  const seconds = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return seconds < 120 ? `${seconds} s ago` : seconds < 7200 ? `${Math.round(seconds / 60)} min ago` : `${Math.round(seconds / 3600)} h ago`;
}

function describeLiveness(host: HostView): string {
  // A standby SPM candidate writes its lease block only while it contends, so 'silent' there is normal.
  const parts = [`SPM lease ${host.spmCandidate === 'alive' ? 'renewed' : host.spmCandidate === 'silent' ? 'standing by' : 'never written'}`, `agent ${host.agent}`];
  return `${host.alive ? 'alive' : 'no sign of life'} (${parts.join(', ')})`;
}

export function renderCluster(view: ClusterView): string {
  const spm = view.spm
    ? `SPM: host ${view.spm.hostId}${view.spm.sinceMs ? `, since ${new Date(view.spm.sinceMs).toISOString()} (${ago(view.spm.sinceMs)})` : ''}, ${view.spm.serving ? 'renewing its lease' : 'NOT renewing its lease: stopped or stalled; another host takes over once it expires'}${describeDoorbell(view.spm.doorbell)}`
    : 'SPM: none holds the lease';
  const table = new Table({ head: ['host', 'alive', 'last inventory', 'active volumes', 'waiting', 'last served', 'last refused'], style: { head: [], border: [] }, wordWrap: true });
  for (const host of view.hosts) {
    table.push([
      String(host.hostId) + (host.unreadable.length ? ` (unreadable: ${host.unreadable.join(', ')})` : ''),
      describeLiveness(host),
      host.inventoryWrittenAtMs ? ago(host.inventoryWrittenAtMs) : '-',
      host.activeVolumes === null ? (host.agent === 'never' ? '-' : 'more than fit') : String(host.activeVolumes),
      host.pending.length ? host.pending.map((request) => `#${request.sequence} ${request.operation} ${request.volume} to ${formatSize(request.targetBytes)}`).join('\n') : '-',
      host.lastServed ? `#${host.lastServed.sequence} (${formatSize(host.lastServed.resultBytes)})` : '-',
      host.lastRefused ? `#${host.lastRefused.sequence} ${host.lastRefused.code}` : '-',
    ]);
  }
  return `${spm}\n${view.hosts.length ? table.toString() : 'no host has written to the mailbox or the lease yet'}\nobserved for ${(view.observedMs / 1000).toFixed(1)} s\n`;
}

/** What hosts ring after a request: the doorbell the SPM names in their reply slots. */
function describeDoorbell(doorbell: SpmDoorbell | undefined): string {
  if (doorbell === undefined) return '';
  if (doorbell === 'none') return '; no doorbell (hosts ring only what spm-doorbells lists)';
  return `; doorbell ${formatEndpoint(doorbell)} (named in the reply slots)`;
}
