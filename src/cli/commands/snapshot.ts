import type { Argv, CommandModule } from 'yargs';
import { openHostPlugin } from '../../../plugins/open-host-plugin.js';
import type { StoragePlugin } from '../../../plugins/types.js';
import { DEFAULT_CONTROL_SOCKET } from '../../agent/control-protocol.js';
import { commitDisk } from '../../chain/commit.js';
import { libvirtSnapshotVm, qmpSnapshotVm, snapshotDomain, type SnapshotVm } from '../../chain/snapshot.js';
import { withQmpSession } from '../../qmp/client.js';
import { DEFAULT_CONFIG_FILE, loadHostConfig } from '../../config/host-config.js';
import { DEFAULT_POLICY } from '../../monitor/policy.js';
import { InvalidConfigError } from '../../errors.js';
import { DEFAULT_URI, Virsh } from '../../libvirt/virsh.js';
import { execaRunner } from '../../util/runner.js';
import { formatSize, parseSize } from '../../util/sizes.js';
import { request } from '../agent-request.js';
import { openStoragePlugin, storageOptions, type StorageArguments } from '../storage-options.js';

interface SnapshotArguments extends StorageArguments {
  vm: string;
  qmp?: string;
  disk: string[];
  size: string;
  uri: string;
  socket: string;
  config: string;
}

/** The storage domain named by flags, else by this host's configuration file. */
async function hostPlugin(argv: SnapshotArguments): Promise<StoragePlugin> {
  if (argv.vg !== undefined || argv.domain !== undefined) return openStoragePlugin(argv, 'host');
  const config = await loadHostConfig(argv.config);
  if (!config || (!config.vg && !config['loop-domain'])) throw new InvalidConfigError(`no storage domain: give --vg or --domain, or set vg or loop-domain in ${argv.config}`);
  return openHostPlugin(config, execaRunner);
}

/** The volume work both actions hand to this host's agent (and through it to the SPM). */
function agentRequests(socket: string) {
  return {
    createChild: async (volume: string, parent: string, sizeBytes: number) => (await request(socket, { op: 'create-child', volume, parent, sizeBytes })).sizeBytes ?? 0,
    extend: async (volume: string, sizeBytes: number) => (await request(socket, { op: 'extend', volume, sizeBytes })).sizeBytes ?? 0,
    reparent: async (volume: string, parent: string) => void (await request(socket, { op: 'reparent', volume, parent })),
    remove: async (volume: string) => void (await request(socket, { op: 'delete', volume })),
    reduce: async (volume: string, freeTargetBytes: number) => (await request(socket, { op: 'reduce', volume, freeTargetBytes })).sizeBytes ?? 0,
  };
}

/** What both actions need: the storage domain, libvirt, and this host's agent. */
function hostOptions<T>(command: Argv<T>) {
  return storageOptions(command)
    .option('uri', { type: 'string', default: DEFAULT_URI, describe: 'libvirt connection URI' })
    .option('socket', { type: 'string', default: DEFAULT_CONTROL_SOCKET, describe: "The agent's control socket (requests reach the SPM through it)" })
    .option('config', { type: 'string', default: process.env.TIDELINE_CONFIG ?? DEFAULT_CONFIG_FILE, describe: 'Host configuration, for the storage domain when no flag names it' });
}

export const snapshotCommand: CommandModule = {
  command: 'snapshot',
  describe: 'Live snapshots of running libvirt domains onto new thin volumes, and merging them back',
  builder: (yargs: Argv) =>
    yargs
      .command<SnapshotArguments>(
        'create <vm>',
        'Switch the running domain onto new thin top layers (one per disk), created by the SPM over the current tops; the guest keeps writing',
        (command) =>
          hostOptions(command)
            .positional('vm', { type: 'string', demandOption: true, describe: 'libvirt domain (with --qmp: the name for the new volumes)' })
            .option('qmp', { type: 'string', describe: 'A plain QEMU (no libvirt): a QMP socket of it that the agent does not use' })
            .option('disk', { type: 'string', array: true, default: [], describe: 'Disk target (vda); repeat for more; default: every disk on the storage domain' })
            .option('size', { type: 'string', default: '1G', describe: 'Initial size of each new top volume' }),
        async (argv) => {
          const sizeBytes = parseSize(argv.size, '--size');
          const agent = agentRequests(argv.socket);
          const snapshot = async (vm: SnapshotVm) => snapshotDomain({ vm, plugin: await hostPlugin(argv), createChild: agent.createChild, remove: agent.remove, now: () => new Date() }, { targets: argv.disk, sizeBytes });
          // A plain QEMU is reached through a QMP socket of its own; the agent keeps its own connection.
          const layers =
            argv.qmp === undefined
              ? await snapshot(libvirtSnapshotVm(new Virsh(execaRunner, argv.uri), argv.vm))
              : await withQmpSession(argv.qmp, (client) => snapshot(qmpSnapshotVm(client, argv.vm)));
          for (const layer of layers) process.stdout.write(`${argv.vm} ${layer.target}: now writes to ${layer.volume} (${formatSize(sizeBytes)}, over ${layer.parent}, which is read-only from now on)\n`);
        },
      )
      .command<SnapshotArguments & { base?: string; top?: string; 'free-target': string; headroom?: string }>(
        'commit <vm>',
        'Merge the top layers of a running domain\'s disk into a base below them (by default its parent) and pivot onto it; the merged volumes are zeroed and deleted',
        (command) =>
          hostOptions(command)
            .positional('vm', { type: 'string', demandOption: true, describe: 'libvirt domain' })
            .option('disk', { type: 'string', array: true, demandOption: true, describe: 'Disk target (vda)' })
            .option('base', { type: 'string', describe: 'Volume to merge into (default: the parent of the merged top)' })
            .option('top', { type: 'string', describe: 'An inner layer to merge away (default: the active top, which then pivots onto the base)' })
            .option('free-target', { type: 'string', default: '128M', describe: 'After an inner commit, room left above the end of the base image when it is reduced' })
            .option('headroom', { type: 'string', describe: "Active commit: room added to the base beyond what the layers hold, for the guest's writes during the job (default: chunk in tideline.conf, else oVirt's 2.5 GiB)" }),
        async (argv) => {
          if (argv.disk.length !== 1) throw new InvalidConfigError('name exactly one --disk to commit');
          const freeTargetBytes = parseSize(argv['free-target'], '--free-target');
          const agent = agentRequests(argv.socket);
          const outcome = await commitDisk(
            {
              virsh: new Virsh(execaRunner, argv.uri),
              plugin: await hostPlugin(argv),
              extend: agent.extend,
              reparent: agent.reparent,
              remove: agent.remove,
              reduce: (volume) => agent.reduce(volume, freeTargetBytes),
              run: execaRunner,
              activeCommitHeadroomBytes: argv.headroom === undefined ? ((await loadHostConfig(argv.config))?.chunk ?? DEFAULT_POLICY.chunkBytes) : parseSize(argv.headroom, '--headroom'),
            },
            argv.vm,
            argv.disk[0]!,
            { ...(argv.base === undefined ? {} : { base: argv.base }), ...(argv.top === undefined ? {} : { top: argv.top }) },
          );
          const space =
            outcome.baseBytesReduced === undefined
              ? `${outcome.base} is the active layer now and keeps ${formatSize(outcome.baseBytesAfter)}; run 'tideline volume reduce ${outcome.base}' once the VM is stopped to give back what it does not use`
              : `${outcome.base} reduced to ${formatSize(outcome.baseBytesReduced)}`;
          process.stdout.write(`${argv.vm} ${argv.disk[0]}: ${outcome.merged.join(', ')} merged into ${outcome.base} (extended ${formatSize(outcome.baseBytesBefore)} -> ${formatSize(outcome.baseBytesAfter)} first)${argv.top === undefined ? ', pivoted' : ''}; merged volumes zeroed and deleted; ${space}\n`);
        },
      )
      .demandCommand(1, 'name an action: create or commit'),
  handler: () => undefined,
};
