import Table from 'cli-table3';
import type { Argv, CommandModule } from 'yargs';
import { DEFAULT_CONTROL_SOCKET } from '../../agent/control-protocol.js';
import { request } from '../agent-request.js';
import { volumeCap, VIRTUAL_SIZE_TAG } from '../../spm/validate.js';
import { volumeTree } from '../../chain/volume-tree.js';
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
          process.stdout.write(`volume ${argv.name} created: ${formatSize(reply.sizeBytes ?? 0)} now, qcow2 of ${argv['virtual-size']}\n`);
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
      .demandCommand(1, 'name an action: create, delete, reduce or list'),
  handler: () => undefined,
};
