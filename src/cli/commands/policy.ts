import type { Argv, CommandModule } from 'yargs';
import { InvalidConfigError } from '../../errors.js';
import { policyXml, TIDELINE_NAMESPACE, type DiskPolicy } from '../../libvirt/domain-xml.js';
import { DirectLibvirt } from '../../libvirt/remote/direct-libvirt.js';
import { DEFAULT_URI, Virsh } from '../../libvirt/virsh.js';
import { execaRunner } from '../../util/runner.js';
import { formatSize, parseSize } from '../../util/sizes.js';
import { describePolicy, readDomainPolicy, showPolicy } from './policy-show.js';

/**
 * Per-VM and per-disk thin-provisioning policy, kept in the domain XML's
 * <metadata> under tideline's namespace (the same as `virsh metadata`). The
 * agent notices the change (libvirt's metadata-change event) and applies it.
 */
const METADATA_KEY = 'tideline';

interface SetArguments {
  vm: string;
  disk?: string;
  chunk?: string;
  'free-target'?: string;
  'max-size'?: string;
  enabled?: boolean;
  uri: string;
}

export const policyCommand: CommandModule = {
  command: 'policy',
  describe: 'Show or set the thin-provisioning policy of a libvirt domain or one of its disks',
  builder: (yargs: Argv) =>
    yargs
      .command<{ vm: string; json: boolean; uri: string }>(
        'show <vm>',
        "Show the domain's tideline policy",
        (command) => command.positional('vm', { type: 'string', demandOption: true }).option('json', { type: 'boolean', default: false }).option('uri', { type: 'string', default: DEFAULT_URI }),
        (argv) => showPolicy(argv, execaRunner),
      )
      .command<SetArguments>(
        'set <vm>',
        "Change the domain's (or with --disk, one disk's) policy; unnamed settings stay as they are",
        (command) =>
          command
            .positional('vm', { type: 'string', demandOption: true })
            .option('disk', { type: 'string', describe: 'Disk target (vda, vdb, ...); without it the whole VM' })
            .option('chunk', { type: 'string', describe: 'How much one extension adds' })
            .option('free-target', { type: 'string', describe: 'Extend when less than this is free' })
            .option('max-size', { type: 'string', describe: 'Never grow past this' })
            .option('enabled', { type: 'boolean', describe: 'Thin provisioning on (--enabled) or off (--no-enabled)' })
            .option('uri', { type: 'string', default: DEFAULT_URI }),
        async (argv) => {
          const changes: DiskPolicy = {
            ...(argv.chunk ? { chunk: parseSize(argv.chunk, '--chunk') } : {}),
            ...(argv['free-target'] ? { freeTarget: parseSize(argv['free-target'], '--free-target') } : {}),
            ...(argv['max-size'] ? { maxSize: parseSize(argv['max-size'], '--max-size') } : {}),
            ...(argv.enabled === undefined ? {} : { enabled: argv.enabled }),
          };
          if (Object.keys(changes).length === 0) throw new InvalidConfigError('name at least one of --chunk, --free-target, --max-size, --enabled/--no-enabled');
          if (argv.disk !== undefined && !/^[a-z]+[a-z0-9]*$/.test(argv.disk)) throw new InvalidConfigError(`--disk '${argv.disk}' is not a disk target such as vda`);
          // What the flags alone get wrong is said before libvirt is asked anything.
          assertTargetWithinChunk(changes);
          const virsh = new Virsh(execaRunner, argv.uri, new DirectLibvirt(argv.uri));
          const policy = await readDomainPolicy(virsh, argv.vm);
          if (argv.disk) policy.disks[argv.disk] = { ...policy.disks[argv.disk], ...changes };
          else policy.vm = { ...policy.vm, ...changes };
          const merged = argv.disk ? { ...policy.vm, ...policy.disks[argv.disk] } : policy.vm;
          assertTargetWithinChunk(merged);
          await virsh.setMetadata(argv.vm, TIDELINE_NAMESPACE, METADATA_KEY, policyXml(policy));
          process.stdout.write(`${argv.vm}${argv.disk ? ` ${argv.disk}` : ''}: ${describePolicy(argv.disk ? policy.disks[argv.disk]! : policy.vm)}\n`);
        },
      )
      .demandCommand(1, 'name an action: show or set'),
  handler: () => undefined,
};

function assertTargetWithinChunk(policy: DiskPolicy): void {
  if (policy.chunk !== undefined && policy.freeTarget !== undefined && policy.freeTarget > policy.chunk) {
    throw new InvalidConfigError(`free target ${formatSize(policy.freeTarget)} exceeds the chunk ${formatSize(policy.chunk)}: every extension would trigger the next at once`);
  }
}
