import type { Argv, CommandModule } from 'yargs';
import { Mailbox } from '../../mailbox/mailbox.js';
import { HEADER_VERSION, holdsEveryRegion, Operation, REPLY_STATUS_CODES, type Decoded, type Slot } from '../../mailbox/format.js';
import { initLeaseVolume } from '../../lease/open-storage-lease.js';
import { initSanlock } from '../../lease/sanlock.js';
import { execaRunner } from '../../util/runner.js';
import { formatSize } from '../../util/sizes.js';
import { InvalidConfigError, TideError } from '../../errors.js';
import { INVENTORY_INTERVAL_MS } from '../../mailbox/inventory-publisher.js';
import type { Inventory } from '../../mailbox/inventory.js';
import { formatEndpoint } from '../../util/address-text.js';

export class HostStillWritingError extends TideError {
  readonly code = 'host-still-writing';
}

function absolute(file: string): string {
  if (!file.startsWith('/')) throw new InvalidConfigError(`'${file}' must be an absolute path`);
  return file;
}

export const mailboxCommand: CommandModule = {
  command: 'mailbox',
  describe: 'Create or inspect the mailbox volume hosts and the SPM talk through',
  builder: (yargs: Argv) =>
    yargs
      .command<{ path: string; 'max-hosts': number; force: boolean }>(
        'init <path>',
        'Write an empty mailbox (a file in the lab, an LV in production)',
        (command) =>
          command
            .positional('path', { type: 'string', demandOption: true })
            .option('max-hosts', { type: 'number', default: 250, describe: 'Host ids 1..N can use it' })
            .option('force', { type: 'boolean', default: false, describe: 'Overwrite an existing mailbox (pending requests are lost)' }),
        async (argv) => {
          const header = await Mailbox.init(absolute(argv.path), { maxHosts: argv['max-hosts'], force: argv.force });
          process.stdout.write(`mailbox ${header.mailboxId} for ${header.maxHosts} hosts written to ${argv.path}\n`);
        },
      )
      .command<{ path: string; json: boolean }>(
        'dump <path>',
        'Decode every slot that holds something',
        (command) => command.positional('path', { type: 'string', demandOption: true }).option('json', { type: 'boolean', default: false }),
        async (argv) => {
          const mailbox = await Mailbox.open(absolute(argv.path));
          try {
            const [requests, replies] = await Promise.all([mailbox.readAllRequests(), mailbox.readAllReplies()]);
            // A mailbox from before inventories has none to show; everything else still dumps.
            const inventories = await mailbox.readInventories().catch(() => new Map<number, Decoded<Inventory>>());
            const inventoryOf = (hostId: number): Decoded<Inventory> => inventories.get(hostId) ?? { kind: 'empty' };
            const hosts = [...requests.keys()].filter((hostId) => requests.get(hostId)!.kind !== 'empty' || replies.get(hostId)!.kind !== 'empty' || inventoryOf(hostId).kind !== 'empty');
            const view = hosts.map((hostId) => ({ hostId, requests: plain(requests.get(hostId)!), replies: plain(replies.get(hostId)!), inventory: plainInventory(inventoryOf(hostId)) }));
            if (argv.json) {
              process.stdout.write(`${JSON.stringify({ header: mailbox.header, hosts: view }, null, 2)}\n`);
              return;
            }
            process.stdout.write(`mailbox ${mailbox.header.mailboxId} (format ${mailbox.header.version}): ${mailbox.header.maxHosts} hosts, ${hosts.length} in use\n`);
            if (!holdsEveryRegion(mailbox.header.version)) {
              process.stdout.write(`  made by an older tideline: a quiet SPM may have to scan every slot; 'tideline mailbox init --force' while no host has requests in flight makes it format ${HEADER_VERSION}\n`);
            }
            for (const host of view) {
              process.stdout.write(`host ${host.hostId}\n`);
              process.stdout.write(`  requests: ${describeSlot(requests.get(host.hostId)!, (request) => `#${request.sequence} ${Operation[request.operation]?.toLowerCase()} ${request.volume} to ${formatSize(request.targetBytes)}`)}\n`);
              process.stdout.write(`  replies:  ${describeSlot(replies.get(host.hostId)!, (reply) => `#${reply.sequence} ${REPLY_STATUS_CODES[reply.status]} ${formatSize(reply.resultBytes)}`)}\n`);
              process.stdout.write(`  inventory: ${describeInventory(inventoryOf(host.hostId))}\n`);
            }
          } finally {
            await mailbox.close();
          }
        },
      )
      .command<{ path: string; 'host-id': number; 'watch-seconds': number }>(
        'forget-host <path>',
        "Clear the inventory of a host that is down for good, so the SPM may delete the volumes it listed (refused while that host's agent still writes)",
        (command) =>
          command
            .positional('path', { type: 'string', demandOption: true })
            .option('host-id', { type: 'number', demandOption: true, describe: 'The host that is gone' })
            .option('watch-seconds', { type: 'number', default: (3 * INVENTORY_INTERVAL_MS) / 1000, describe: 'How long to watch for its agent writing before clearing' }),
        async (argv) => {
          const mailbox = await Mailbox.open(absolute(argv.path));
          try {
            const hostId = argv['host-id'];
            mailbox.assertHostId(hostId);
            const heartbeat = async () => {
              const decoded = (await mailbox.readInventories()).get(hostId)!;
              return decoded.kind === 'valid' ? decoded.value.heartbeat : decoded.kind;
            };
            const before = await heartbeat();
            if (before === 'empty') {
              process.stdout.write(`host ${hostId} has no inventory: nothing to forget\n`);
              return;
            }
            process.stdout.write(`watching host ${hostId}'s inventory for ${argv['watch-seconds']} s (its agent writes every ${INVENTORY_INTERVAL_MS / 1000} s while it runs)...\n`);
            await new Promise((resolve) => setTimeout(resolve, argv['watch-seconds'] * 1000));
            const after = await heartbeat();
            if (after !== before) throw new HostStillWritingError(`host ${hostId}'s agent is still writing its inventory (heartbeat ${String(before)} -> ${String(after)}): it is not down; stop its VMs there instead`);
            await mailbox.clearInventory(hostId);
            process.stdout.write(`host ${hostId}'s inventory cleared: the SPM no longer counts its volumes as open\n`);
          } finally {
            await mailbox.close();
          }
        },
      )
      .demandCommand(1, 'name an action: init, dump or forget-host'),
  handler: () => undefined,
};

export const leaseCommand: CommandModule<object, { path: string; 'max-hosts': number; sanlock: boolean; ids?: string; lockspace: string }> = {
  command: 'lease init <path>',
  describe: 'Prepare the SPM lease: size the built-in lease volume, or with --sanlock write the lockspace and SPM resource',
  builder: (yargs) =>
    yargs
      .positional('path', { type: 'string', demandOption: true })
      .option('max-hosts', { type: 'number', default: 250 })
      .option('sanlock', { type: 'boolean', default: false, describe: 'Initialise a sanlock lockspace (on --ids) and the SPM resource (on PATH)' })
      .option('ids', { type: 'string', describe: 'sanlock: lockspace volume' })
      .option('lockspace', { type: 'string', default: 'tideline' }),
  handler: async (argv) => {
    if (argv.sanlock) {
      if (!argv.ids) throw new InvalidConfigError('--sanlock needs --ids, the lockspace volume');
      await initSanlock(execaRunner, { lockspace: argv.lockspace, hostId: 1, idsPath: absolute(argv.ids), leasesPath: absolute(argv.path) });
      process.stdout.write(`sanlock lockspace ${argv.lockspace} on ${argv.ids} and SPM resource on ${argv.path} initialised\n`);
      return;
    }
    await initLeaseVolume(absolute(argv.path), argv['max-hosts']);
    process.stdout.write(`lease volume ${argv.path} ready for ${argv['max-hosts']} hosts\n`);
  },
};

function plain<T>(decoded: Decoded<Slot<T>>): unknown {
  if (decoded.kind !== 'valid') return decoded;
  return { kind: 'valid', generation: decoded.value.generation, messages: decoded.value.messages.flatMap((message, index) => (message ? [{ index, ...message }] : [])), ...(decoded.value.spm ? { spm: decoded.value.spm } : {}) };
}

function describeSlot<T>(decoded: Decoded<Slot<T>>, describe: (message: T) => string): string {
  if (decoded.kind === 'empty') return 'never written';
  if (decoded.kind === 'invalid') return `UNREADABLE (${decoded.reason}: ${decoded.detail})`;
  const messages = decoded.value.messages.flatMap((message, index) => (message ? [`[${index}] ${describe(message)}`] : []));
  const { spm } = decoded.value;
  const writer = spm ? `; written by the SPM on host ${spm.hostId}, ${spm.doorbell ? `doorbell ${formatEndpoint(spm.doorbell)}` : 'no doorbell'}` : '';
  return `generation ${decoded.value.generation}; ${messages.length === 0 ? 'no messages' : messages.join(', ')}${writer}`;
}

function describeInventory(decoded: Decoded<Inventory>): string {
  if (decoded.kind === 'empty') return 'none';
  if (decoded.kind === 'invalid') return `unreadable (${decoded.reason}: ${decoded.detail})`;
  const count = decoded.value.hashes.size;
  return `heartbeat ${decoded.value.heartbeat}, ${count} active volume${count === 1 ? '' : 's'}${decoded.value.overflow ? ' and more (overflow: every volume counts as active there)' : ''}`;
}

/** JSON has no sets. */
function plainInventory(decoded: Decoded<Inventory>): unknown {
  return decoded.kind === 'valid' ? { kind: 'valid', value: { ...decoded.value, hashes: [...decoded.value.hashes] } } : decoded;
}
