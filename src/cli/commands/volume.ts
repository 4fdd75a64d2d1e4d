import net from 'node:net';
import readline from 'node:readline';
import Table from 'cli-table3';
import type { Argv, CommandModule } from 'yargs';
import { DEFAULT_CONTROL_SOCKET, encodeControlMessage, type ControlReply, type ControlRequest } from '../../agent/control-protocol.js';
import { TideError } from '../../errors.js';
import { volumeCap, VIRTUAL_SIZE_TAG } from '../../spm/validate.js';
import { formatSize, parseSize } from '../../util/sizes.js';
import { openStoragePlugin, storageOptions, type StorageArguments } from '../storage-options.js';

class AgentUnreachableError extends TideError {
  readonly code = 'agent-unreachable';
}

class VolumeRequestError extends TideError {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Create and delete go through this host's agent (its mailbox slot has one writer); every request waits for the SPM's answer. */
const REQUEST_TIMEOUT_MS = 30 * 60_000;

async function askAgent(socketPath: string, request: ControlRequest): Promise<ControlReply> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(socketPath);
    const timer = setTimeout(() => socket.destroy(new AgentUnreachableError(`the agent did not answer within ${REQUEST_TIMEOUT_MS / 60_000} minutes`)), REQUEST_TIMEOUT_MS);
    socket.once('connect', () => {
      socket.write(encodeControlMessage(request));
      const lines = readline.createInterface({ input: socket });
      lines.on('error', () => undefined); // the socket's own error handler reports it
      lines.once('line', (line) => {
        clearTimeout(timer);
        socket.end();
        resolve(JSON.parse(line) as ControlReply);
      });
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(error instanceof TideError ? error : new AgentUnreachableError(`cannot reach the tideline agent at ${socketPath} (${error.message}); is it running (systemctl status tideline-agent)?`));
    });
  });
}

async function request(socketPath: string, message: ControlRequest): Promise<ControlReply & { ok: true }> {
  const reply = await askAgent(socketPath, message);
  if (!reply.ok) throw new VolumeRequestError(reply.code, reply.message);
  return reply;
}

export const volumeCommand: CommandModule = {
  command: 'volume',
  describe: 'Create, delete and list thin volumes of the storage domain',
  builder: (yargs: Argv) =>
    yargs
      .command<{ name: string; size: string; 'virtual-size': string; socket: string }>(
        'create <name>',
        'Create a thin volume holding an empty qcow2 image (through the SPM)',
        (command) =>
          command
            .positional('name', { type: 'string', demandOption: true })
            .option('virtual-size', { type: 'string', demandOption: true, describe: 'Disk size the guest sees' })
            .option('size', { type: 'string', default: '1G', describe: 'Initial size of the volume' })
            .option('socket', { type: 'string', default: DEFAULT_CONTROL_SOCKET, describe: "The agent's control socket" }),
        async (argv) => {
          const reply = await request(argv.socket, { op: 'create', volume: argv.name, sizeBytes: parseSize(argv.size, '--size'), virtualBytes: parseSize(argv['virtual-size'], '--virtual-size') });
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
          const table = new Table({ head: ['volume', 'size', 'virtual size', 'cap'], style: { head: [], border: [] } });
          for (const volume of volumes) {
            const virtual = Number(volume.tags[VIRTUAL_SIZE_TAG]);
            const cap = volumeCap(volume, plugin.extentBytes);
            table.push([volume.name, formatSize(volume.sizeBytes), virtual ? formatSize(virtual) : '-', cap ? formatSize(cap) : '-']);
          }
          process.stdout.write(`${table.toString()}\n${formatSize(await plugin.freeBytes())} free in ${plugin.domain}\n`);
        },
      )
      .demandCommand(1, 'name an action: create, delete or list'),
  handler: () => undefined,
};
