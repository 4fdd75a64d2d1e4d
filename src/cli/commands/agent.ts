import type { CommandModule } from 'yargs';
import { Agent } from '../../agent/agent.js';
import { DirectExtender } from '../../agent/direct-extender.js';
import { DEFAULT_STATUS_FILE } from '../../agent/status-file.js';
import { agentPolicy, parseAgentSettings } from '../../config/agent-settings.js';
import { DEFAULT_CONFIG_FILE, loadHostConfig } from '../../config/host-config.js';
import { LibvirtAgent } from '../../libvirt/libvirt-agent.js';
import { DEFAULT_URI, Virsh } from '../../libvirt/virsh.js';
import { DIRECT_UNUSABLE_MESSAGE, DirectLibvirt } from '../../libvirt/remote/direct-libvirt.js';
import { createLogger, type Logger } from '../../log/logger.js';
import { systemClock } from '../../util/clock.js';
import { abortOnSignals } from '../failure.js';
import { openStoragePlugin, storageOptions, type StorageArguments } from '../storage-options.js';
import { InvalidConfigError } from '../../errors.js';
import { Mailbox } from '../../mailbox/mailbox.js';
import { MailboxExtender } from '../../mailbox/mailbox-extender.js';
import { withHostConfig } from '../host-settings.js';
import { MailboxMigrationPeers } from '../../mailbox/migration-peers.js';
import { DoorbellRinger } from '../../doorbell/doorbell.js';
import { parseAddressList } from '../../config/listen-address.js';
import { InventoryPublisher } from '../../mailbox/inventory-publisher.js';
import type { Extender } from '../../monitor/ports.js';
import { DEFAULT_CONTROL_SOCKET } from '../../agent/control-protocol.js';
import { serveControl } from '../../agent/control-server.js';
import { volumeService } from '../../agent/volume-service.js';
import { HookSpool } from '../../agent/hook-spool.js';
import { DEFAULT_HOOK_SPOOL } from '../../agent/spool-protocol.js';
import { execaRunner } from '../../util/runner.js';

interface AgentArguments extends StorageArguments {
  qmp: string[];
  'spm-doorbells'?: string;
  chunk?: string;
  'free-target'?: string;
  'max-size'?: string;
  adaptive: boolean;
  'status-file': string;
  'metrics-listen'?: string;
  poll: number;
  mailbox?: string;
  'host-id'?: number;
  'control-socket'?: string;
  config: string;
  libvirt: boolean;
  'libvirt-socket': boolean;
  uri: string;
  'qmp-dir'?: string;
  'hook-spool': string;
}

export const agentCommand: CommandModule<object, AgentArguments> = {
  command: 'agent',
  describe: 'Watch QEMU processes and grow their thin drives before they fill up (runs until SIGTERM)',
  builder: (yargs) =>
    storageOptions(yargs)
      .option('qmp', { type: 'string', array: true, default: [], describe: 'QMP socket of a VM, as NAME=PATH or PATH (repeatable)' })
      .option('chunk', { type: 'string', describe: 'How much one extension adds (default 2560M, as oVirt)' })
      .option('free-target', { type: 'string', describe: 'Extend when less than this is free above the high-water mark (default 2048M)' })
      .option('max-size', { type: 'string', describe: 'Never grow a volume past this, even below the qcow2 cap' })
      .option('adaptive', { type: 'boolean', default: false, describe: 'Grow chunk and free target with the measured write rate' })
      .option('status-file', { type: 'string', default: DEFAULT_STATUS_FILE, describe: "Where to publish state for 'tideline status'" })
      .option('metrics-listen', { type: 'string', describe: 'Serve Prometheus metrics on HOST:PORT, e.g. 127.0.0.1:9471' })
      .option('poll', { type: 'number', default: 5, describe: 'Seconds between safety polls of the high-water mark (every second while libvirt holds a threshold change back)' })
      .option('mailbox', { type: 'string', describe: 'Ask the SPM for extensions through this mailbox volume (shared storage); without it the agent extends by itself (single host)' })
      .option('host-id', { type: 'number', describe: "This host's id in the mailbox (needed with --mailbox)" })
      .option('qmp-dir', { type: 'string', describe: 'Watch this directory for plain QEMU VMs: every NAME.qmp socket in it is a VM' })
      .option('libvirt', { type: 'boolean', default: false, describe: 'Find and follow the domains of libvirtd and their thin disks' })
      .option('uri', { type: 'string', default: DEFAULT_URI, describe: 'libvirt connection URI' })
      .option('libvirt-socket', { type: 'boolean', default: true, describe: "With --libvirt: ask libvirtd over its socket at every poll (virsh only where the socket cannot be used); --no-libvirt-socket asks everything through virsh" })
      .option('hook-spool', { type: 'string', default: DEFAULT_HOOK_SPOOL, describe: 'Directory where the libvirt hook drops domain events for this agent (with --libvirt)' })
      .option('spm-doorbells', { type: 'string', describe: "With --mailbox: also ring these SPM candidates' doorbells (UDP HOST:PORT, comma separated) after each request. Not needed where the SPM has a doorbell: the host rings the one the SPM names in its reply slot; a list still serves a host's very first request and SPMs of older tidelines (config: spm-doorbells)" })
      .option('control-socket', { type: 'string', describe: `Where 'tideline volume create|delete' and the hook reach this agent (default ${DEFAULT_CONTROL_SOCKET})` })
      .option('config', { type: 'string', default: process.env.TIDELINE_CONFIG ?? DEFAULT_CONFIG_FILE, describe: 'Host configuration; flags given on the command line win over it' }),
  handler: async (commandLine) => {
    const host = await loadHostConfig(commandLine.config);
    const argv: AgentArguments = {
      ...withHostConfig(commandLine, host),
      'control-socket': commandLine['control-socket'] ?? host?.['control-socket'] ?? DEFAULT_CONTROL_SOCKET,
    };
    const settings = parseAgentSettings({
      qmp: argv.qmp,
      ...(argv.chunk ? { chunk: argv.chunk } : host?.chunk ? { chunk: host.chunk } : {}),
      ...(argv['free-target'] ? { freeTarget: argv['free-target'] } : host?.['free-target'] ? { freeTarget: host['free-target'] } : {}),
      ...(argv['max-size'] ? { maxSize: argv['max-size'] } : host?.['max-size'] ? { maxSize: host['max-size'] } : {}),
      adaptive: argv.adaptive,
      statusFile: argv['status-file'],
      ...(argv['metrics-listen'] ? { metricsListen: argv['metrics-listen'] } : {}),
      pollSeconds: argv.poll,
    });
    const logger = createLogger();
    // Without a mailbox this agent extends volumes itself (single host), so it is the one writer of the domain.
    const plugin = await openStoragePlugin(argv, argv.mailbox ? 'host' : 'spm');
    let extender: Extender = new DirectExtender(plugin);
    let mailbox: Mailbox | undefined;
    let ringer: DoorbellRinger | undefined;
    if (argv.mailbox) {
      if (argv['host-id'] === undefined) throw new InvalidConfigError('--mailbox needs --host-id: the slot this host writes its requests into');
      mailbox = await Mailbox.open(argv.mailbox);
      const doorbells = argv['spm-doorbells'] === undefined ? host?.['spm-doorbells'] : parseAddressList(argv['spm-doorbells'], '--spm-doorbells');
      // Always a ringer: with no spm-doorbells it rings only the doorbell the SPM names in this host's reply slot.
      ringer = new DoorbellRinger(doorbells ?? [], { hostId: argv['host-id'], mailboxId: mailbox.header.mailboxId }, logger);
      extender = await MailboxExtender.open({ mailbox, hostId: argv['host-id'], plugin, clock: systemClock, logger: logger.child({ hostId: argv['host-id'] }), doorbell: ringer });
    }
    // With a mailbox, the SPM learns what this host has active from its inventory.
    const inventory = mailbox && argv['host-id'] !== undefined ? new InventoryPublisher({ mailbox, hostId: argv['host-id'], plugin, clock: systemClock, logger }) : undefined;
    await inventory?.start();
    const peers = mailbox && inventory ? new MailboxMigrationPeers({ mailbox, hostId: argv['host-id']!, publisher: inventory, clock: systemClock, logger }) : undefined;
    let agent: Agent | undefined;
    const volumes = volumeService({
      plugin,
      logger,
      extender,
      run: execaRunner,
      publishInventory: () => inventory?.publishNow() ?? Promise.resolve(),
      usedBy: (volume) => agent?.status().find((vm) => vm.drives.some((drive) => drive.volume === volume))?.vm,
      resizeLive: (volume, virtualBytes) => libvirt?.resizeLive(volume, virtualBytes) ?? Promise.resolve(undefined),
      reduced: (volume, volumeBytes) => libvirt?.volumeReduced(volume, volumeBytes),
    });
    const libvirt = argv.libvirt
      ? new LibvirtAgent({ virsh: agentVirsh(argv, logger), plugin, extender, followImage: (volume) => volumes.followImage(volume), policy: agentPolicy(settings, plugin.extentBytes), ...(settings.maxSize ? { maxSizeBytes: settings.maxSize } : {}), clock: systemClock, logger, pollIntervalMs: settings.pollSeconds * 1000, ...(peers ? { peers } : {}) })
      : undefined;
    if (argv['qmp-dir'] !== undefined && !argv['qmp-dir'].startsWith('/')) throw new InvalidConfigError(`--qmp-dir '${argv['qmp-dir']}' must be an absolute path`);
    agent = new Agent({ settings, plugin, extender, clock: systemClock, logger, ...(peers ? { peers } : {}), ...(libvirt ? { libvirt } : {}), ...(argv['qmp-dir'] ? { qmpDirectory: argv['qmp-dir'] } : {}) });
    const control = await serveControl(argv['control-socket']!, volumes, logger);
    const hookSpool = libvirt
      ? await HookSpool.watch(
          argv['hook-spool'],
          (events) => {
            void inventory?.publishNow();
            return libvirt.hookEvents(events);
          },
          logger,
          (request) => volumes.prepareDomain(request),
        )
      : undefined;
    const signals = abortOnSignals();
    const stopped = new Promise<void>((resolve) => signals.signal.addEventListener('abort', () => resolve(), { once: true }));
    try {
      await Promise.race([agent.start(), stopped]);
      await stopped;
      logger.info('stopping: VMs keep running; their volumes keep the size they have');
    } finally {
      control.close();
      await hookSpool?.close();
      await agent.stop();
      await inventory?.stop();
      if (extender instanceof MailboxExtender) extender.close();
      ringer?.close();
      await mailbox?.close();
      signals.dispose();
    }
  },
};

/** The agent's libvirt adapter: the daemon's socket kept open (unless --no-libvirt-socket), virsh behind it. */
function agentVirsh(argv: AgentArguments, logger: Logger): Virsh {
  if (!argv['libvirt-socket']) return new Virsh(execaRunner, argv.uri);
  const direct = new DirectLibvirt(argv.uri, { keepOpen: true, onUnusable: (error) => logger.warn({ err: error.message, uri: argv.uri }, DIRECT_UNUSABLE_MESSAGE) });
  return new Virsh(execaRunner, argv.uri, direct);
}
