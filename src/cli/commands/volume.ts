import Table from 'cli-table3';
import type { Argv, CommandModule } from 'yargs';
import { DEFAULT_CONTROL_SOCKET } from '../../agent/control-protocol.js';
import { request } from '../agent-request.js';
import { volumeCap, VIRTUAL_SIZE_TAG } from '../../spm/validate.js';
import { volumeTree } from '../../chain/volume-tree.js';
import { TideError } from '../../errors.js';
import { formatSize, parseSize } from '../../util/sizes.js';
import { openStoragePlugin, storageOptions, type StorageArguments } from '../storage-options.js';

export const volumeCommand: CommandModule = {
  command: 'volume',
  describe: 'Create, delete and list thin volumes of the storage domain',
  builder: (yargs: Argv) =>
    yargs
      .command<{ name: string; size: string; 'virtual-size'?: string; backing?: string; socket: string }>(
        'create <name>',
        'Create a thin volume holding an empty qcow2 image, or one over a template with --backing (through the SPM)',
        (command) =>
          command
            .positional('name', { type: 'string', demandOption: true })
            .option('virtual-size', { type: 'string', describe: 'Disk size the guest sees (not with --backing: the template sets it)' })
            .option('backing', { type: 'string', describe: 'A template (or any volume left alone): the new image reads what it has not written from it' })
            .option('size', { type: 'string', default: '1G', describe: 'Initial size of the volume' })
            .option('socket', { type: 'string', default: DEFAULT_CONTROL_SOCKET, describe: "The agent's control socket" })
            .check((argv) => {
              if (argv.backing === undefined && argv['virtual-size'] === undefined) throw new Error('give --virtual-size, or --backing TEMPLATE to build the volume on a template');
              if (argv.backing !== undefined && argv['virtual-size'] !== undefined) throw new Error('--virtual-size cannot go with --backing: the volume has its template\'s virtual size');
              return true;
            }),
        async (argv) => {
          const sizeBytes = parseSize(argv.size, '--size');
          if (argv.backing !== undefined) {
            const reply = await request(argv.socket, { op: 'create-child', volume: argv.name, parent: argv.backing, sizeBytes });
            process.stdout.write(`volume ${argv.name} created on ${argv.backing}: ${formatSize(reply.sizeBytes ?? 0)} now\n`);
            return;
          }
          const reply = await request(argv.socket, { op: 'create', volume: argv.name, sizeBytes, virtualBytes: parseSize(argv['virtual-size']!, '--virtual-size') });
          process.stdout.write(`volume ${argv.name} created: ${formatSize(reply.sizeBytes ?? 0)} now, qcow2 of ${argv['virtual-size']}; use it with 'tideline volume activate ${argv.name}'\n`);
        },
      )
      .command<{ name: string; socket: string }>(
        'delete <name>',
        'Zero a volume and give its space back (through the SPM)',
        (command) => command.positional('name', { type: 'string', demandOption: true }).option('socket', { type: 'string', default: DEFAULT_CONTROL_SOCKET }),
        async (argv) => {
          await request(argv.socket, { op: 'delete', volume: argv.name });
          process.stdout.write(`volume ${argv.name} zeroed and deleted\n`);
        },
      )
      .command<{ name: string; 'virtual-size': string; socket: string }>(
        'resize <name>',
        "Grow the disk size the guest sees: live through libvirt when a domain on this host has the volume open, offline through the SPM when no host does (never smaller)",
        (command) =>
          command
            .positional('name', { type: 'string', demandOption: true })
            .option('virtual-size', { type: 'string', demandOption: true, describe: 'The new disk size the guest sees' })
            .option('socket', { type: 'string', default: DEFAULT_CONTROL_SOCKET }),
        async (argv) => {
          const virtualBytes = parseSize(argv['virtual-size'], '--virtual-size');
          const reply = await request(argv.socket, { op: 'resize', volume: argv.name, virtualBytes });
          process.stdout.write(
            reply.vm
              ? `volume ${argv.name} grown live to ${formatSize(virtualBytes)} in domain ${reply.vm}; the guest sees the new size now\n`
              : `volume ${argv.name}'s image grown to ${formatSize(virtualBytes)} (no VM had it open)\n`,
          );
        },
      )
      .command<{ name: string; 'free-target': string; socket: string }>(
        'reduce <name>',
        'Give space back: shrink a volume no VM has open to where its image ends plus the free target (through the SPM)',
        (command) =>
          command
            .positional('name', { type: 'string', demandOption: true })
            .option('free-target', { type: 'string', default: '128M', describe: 'Room left above the end of the image' })
            .option('socket', { type: 'string', default: DEFAULT_CONTROL_SOCKET }),
        async (argv) => {
          const reply = await request(argv.socket, { op: 'reduce', volume: argv.name, freeTargetBytes: parseSize(argv['free-target'], '--free-target') });
          process.stdout.write(`volume ${argv.name} is now ${formatSize(reply.sizeBytes ?? 0)} (its image's end plus ${argv['free-target']}, at most)\n`);
        },
      )
      .command<{ name: string; socket: string; json: boolean }>(
        'activate <name>',
        'Make a volume usable on this host at its current size and print its block device (for plain QEMU; libvirt\'s hook does this for domains)',
        (command) => command.positional('name', { type: 'string', demandOption: true }).option('socket', { type: 'string', default: DEFAULT_CONTROL_SOCKET }).option('json', { type: 'boolean', default: false }),
        async (argv) => {
          const reply = await request(argv.socket, { op: 'activate', volume: argv.name });
          printActivation(argv.json, { volume: argv.name, active: true, path: reply.path ?? null, visibleBytes: reply.sizeBytes ?? null });
        },
      )
      .command<{ name: string; socket: string; json: boolean }>(
        'deactivate <name>',
        'Make a volume unusable on this host (refused while a VM here has it as its disk)',
        (command) => command.positional('name', { type: 'string', demandOption: true }).option('socket', { type: 'string', default: DEFAULT_CONTROL_SOCKET }).option('json', { type: 'boolean', default: false }),
        async (argv) => {
          await request(argv.socket, { op: 'deactivate', volume: argv.name });
          printActivation(argv.json, { volume: argv.name, active: false, path: null, visibleBytes: null });
        },
      )
      .command<StorageArguments & { name: string; json: boolean }>(
        'path <name>',
        'Print the block device a volume is active as on this host (read-only; exit 1 when it is not active here)',
        (command) => storageOptions(command).positional('name', { type: 'string', demandOption: true }).option('json', { type: 'boolean', default: false }),
        async (argv) => {
          const plugin = await openStoragePlugin(argv, 'host');
          const path = await plugin.activePath(argv.name);
          const visibleBytes = path === undefined ? null : ((await plugin.visibleBytes(argv.name)) ?? null);
          if (!argv.json && path === undefined) throw new VolumeNotActiveHereError(argv.name);
          printActivation(argv.json, { volume: argv.name, active: path !== undefined, path: path ?? null, visibleBytes });
        },
      )
      .command<StorageArguments & { json: boolean }>(
        'list',
        'List the volumes of the storage domain (read-only; any host)',
        (command) => storageOptions(command).option('json', { type: 'boolean', default: false }),
        async (argv) => {
          const plugin = await openStoragePlugin(argv, 'host');
          const volumes = await plugin.list();
          if (argv.json) {
            process.stdout.write(`${JSON.stringify(volumes, null, 2)}\n`);
            return;
          }
          // Chains as a tree: a template or snapshot base first, what is built on it indented below.
          const table = new Table({ head: ['volume', 'size', 'virtual size', 'cap'], style: { head: [], border: [] } });
          for (const { volume, depth } of volumeTree(volumes)) {
            const virtual = Number(volume.tags[VIRTUAL_SIZE_TAG]);
            const cap = volumeCap(volume, plugin.extentBytes);
            table.push([`${depth > 0 ? `${'  '.repeat(depth - 1)}└─ ` : ''}${volume.name}`, formatSize(volume.sizeBytes), virtual ? formatSize(virtual) : '-', cap ? formatSize(cap) : '-']);
          }
          process.stdout.write(`${table.toString()}\n${formatSize(await plugin.freeBytes())} free in ${plugin.domain}\n`);
        },
      )
      .demandCommand(1, 'name an action: create, delete, resize, reduce, activate, deactivate, path or list'),
  handler: () => undefined,
};

class VolumeNotActiveHereError extends TideError {
  readonly code = 'volume-not-active';

  constructor(readonly volume: string) {
    super(`volume ${volume} is not active on this host; activate it with 'tideline volume activate ${volume}'`);
  }
}

interface Activation {
  volume: string;
  active: boolean;
  path: string | null;
  /** The size this host sees the volume at (its device's size). */
  visibleBytes: number | null;
}

/** The path alone on stdout, so that `$(tideline volume activate NAME)` is the device; everything as JSON with --json. */
function printActivation(json: boolean, activation: Activation): void {
  if (json) process.stdout.write(`${JSON.stringify(activation)}\n`);
  else if (activation.path !== null) process.stdout.write(`${activation.path}\n`);
  else process.stderr.write(`volume ${activation.volume} deactivated on this host\n`);
}
