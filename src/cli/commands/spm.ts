import type { CommandModule } from 'yargs';
import { parseListenAddress, type ListenAddress } from '../../config/listen-address.js';
import { serveMetrics } from '../../metrics/server.js';
import { SpmMetrics } from '../../spm/spm-metrics.js';
import { InvalidConfigError } from '../../errors.js';
import { openStorageLease, timingForExpiry } from '../../lease/open-storage-lease.js';
import { HeldBySanlock, joinLockspace, sanlockDaemonRunning, superviseUnderLease, type SanlockPlacement } from '../../lease/sanlock.js';
import { DEFAULT_CONFIG_FILE, loadHostConfig } from '../../config/host-config.js';
import { withHostConfig } from '../host-settings.js';
import { DEFAULT_STALL_TIMEOUT_SECONDS, startHeartbeat } from '../../lease/stall-watchdog.js';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';

/** Where the serving SPM's heartbeat lives, for its supervisor (src/lease/stall-watchdog.ts). */
const HEARTBEAT_DIR = '/run/tideline';
import type { Lease } from '../../lease/types.js';
import { createLogger, type Logger } from '../../log/logger.js';
import { Mailbox } from '../../mailbox/mailbox.js';
import { runSpm } from '../../spm/spm-daemon.js';
import { systemClock } from '../../util/clock.js';
import { execaRunner } from '../../util/runner.js';
import { abortOnSignals } from '../failure.js';
import { openStoragePlugin, storageOptions, type StorageArguments } from '../storage-options.js';

interface SpmCommandLine extends StorageArguments {
  config: string;
  mailbox?: string;
  lease?: string;
  'host-id'?: number;
  'lease-backend'?: 'storage' | 'sanlock';
  'lease-expiry'?: number;
  lockspace?: string;
  ids?: string;
  'sanlock-io-timeout'?: number;
  'under-sanlock': boolean;
  'heartbeat-file'?: string;
  'stall-timeout': number;
  'request-delay': number;
  'metrics-listen'?: string;
  doorbell?: string;
}

/** What the command line may leave to tideline.conf or to defaults. */
type Resolved = 'mailbox' | 'lease' | 'host-id' | 'lease-backend' | 'lease-expiry' | 'lockspace';

/** The command line completed from the host configuration: what the SPM runs with. */
type SpmArguments = Omit<SpmCommandLine, Resolved> & Required<Pick<SpmCommandLine, Resolved>> & { doorbellAddress?: ListenAddress };

export const spmCommand: CommandModule<object, SpmCommandLine> = {
  command: 'spm',
  describe: "Serve the hosts' extension requests while holding the SPM lease (run on every host; one serves, the others stand by)",
  builder: (yargs) =>
    storageOptions(yargs)
      .option('config', { type: 'string', default: process.env.TIDELINE_CONFIG ?? DEFAULT_CONFIG_FILE, describe: "Host configuration, shared with the agent (storage, mailbox, host id, lease); flags win over it" })
      .option('mailbox', { type: 'string', describe: 'Mailbox volume (config: mailbox)' })
      .option('lease', { type: 'string', describe: 'Lease volume: the built-in lease, or the sanlock resource volume (config: lease)' })
      .option('host-id', { type: 'number', describe: "This host's id (1..max hosts), distinct on every host (config: host-id)" })
      .option('lease-backend', { choices: ['storage', 'sanlock'] as const, describe: 'sanlock (production; the default where its daemon runs) or the built-in storage lease (config: lease-backend)' })
      .option('lease-expiry', { type: 'number', describe: `Built-in lease: seconds after which a silent SPM is presumed dead and replaced (default ${DEFAULT_LEASE_EXPIRY_SECONDS})` })
      .option('lockspace', { type: 'string', describe: `sanlock: lockspace name (default ${DEFAULT_LOCKSPACE})` })
      .option('ids', { type: 'string', describe: 'sanlock: volume of the lockspace, host delta leases (config: ids)' })
      .option('sanlock-io-timeout', { type: 'number', describe: 'sanlock: io_timeout in seconds when joining the lockspace' })
      .option('metrics-listen', { type: 'string', describe: 'Serve Prometheus metrics on HOST:PORT, e.g. 127.0.0.1:9472 (with sanlock: by the process holding the lease)' })
      .option('doorbell', { type: 'string', describe: "While serving, listen for the hosts' doorbell rings on this UDP HOST:PORT (an address of this host the others reach), so a quiet SPM answers at once; the SPM names it in every reply slot it writes, and the hosts ring it (config: doorbell)" })
      .option('under-sanlock', { type: 'boolean', default: false, hidden: true })
      .option('heartbeat-file', { type: 'string', hidden: true })
      .option('stall-timeout', { type: 'number', default: DEFAULT_STALL_TIMEOUT_SECONDS, describe: 'sanlock: seconds a serving SPM may stop beating (stopped, frozen) before its supervisor kills it so another host takes over; 0: never' })
      .option('request-delay', { type: 'number', default: 0, alias: 'extend-delay', describe: 'Testing: milliseconds added before every request is carried out, as slow storage would' }),
  handler: async (commandLine) => {
    const argv = await resolveSpmArguments(commandLine);
    const logger = createLogger().child({ hostId: argv['host-id'], role: 'spm' });
    const signals = abortOnSignals();
    try {
      const metricsListen = argv['metrics-listen'] === undefined ? undefined : parseListenAddress(argv['metrics-listen'], '--metrics-listen');
      if (argv['lease-backend'] === 'sanlock' && !argv['under-sanlock']) {
        await superviseSanlock(argv, logger, signals.signal);
        return;
      }
      if (!(argv['stall-timeout'] === 0 || (argv['stall-timeout'] >= 2 && argv['stall-timeout'] <= 3600))) throw new InvalidConfigError(`--stall-timeout ${argv['stall-timeout']} must be 0 (off) or between 2 and 3600 seconds`);
      if (!(argv['lease-expiry'] >= 0.5 && argv['lease-expiry'] <= 600)) throw new InvalidConfigError(`--lease-expiry ${argv['lease-expiry']} must be between 0.5 and 600 seconds`);
      const mailbox = await Mailbox.open(argv.mailbox);
      try {
        mailbox.assertHostId(argv['host-id']);
        const plugin = await openStoragePlugin(argv, 'spm');
        const lease: Lease = argv['under-sanlock']
          ? new HeldBySanlock()
          : await openStorageLease({ path: argv.lease, hostId: argv['host-id'], maxHosts: mailbox.maxHosts, timing: timingForExpiry(argv['lease-expiry'] * 1000), clock: systemClock, logger });
        const metrics = new SpmMetrics();
        if (metricsListen) metrics.collectProcessMetrics();
        const server = metricsListen ? await serveMetrics(metrics.registry, metricsListen.host, metricsListen.port) : undefined;
        if (metricsListen) logger.info(metricsListen, 'serving Prometheus metrics on /metrics');
        const stopBeating = argv['under-sanlock'] && argv['heartbeat-file'] ? startHeartbeat(argv['heartbeat-file']) : undefined;
        try {
          await runSpm({ mailbox, plugin, lease, hostId: argv['host-id'], clock: systemClock, logger, run: execaRunner, signal: signals.signal, requestDelayMs: argv['request-delay'], metrics, ...(argv.doorbellAddress ? { doorbell: argv.doorbellAddress } : {}) });
        } finally {
          stopBeating?.();
          server?.close();
        }
      } finally {
        await mailbox.close();
      }
    } finally {
      signals.dispose();
    }
  },
};

const DEFAULT_LEASE_EXPIRY_SECONDS = 15;
const DEFAULT_LOCKSPACE = 'tideline';

/**
 * Flags, then /etc/tideline/tideline.conf (the file the agent reads: the host
 * id and mailbox are written once), then defaults. The lease backend defaults
 * to sanlock where its daemon runs; the built-in lease must be chosen.
 */
async function resolveSpmArguments(commandLine: SpmCommandLine): Promise<SpmArguments> {
  const host = await loadHostConfig(commandLine.config);
  const merged = withHostConfig(commandLine, host);
  const required = <T>(value: T | undefined, flag: string, key: string, what: string): T => {
    if (value === undefined) throw new InvalidConfigError(`the SPM needs ${what}: give --${flag}, or set '${key}' in ${commandLine.config}`);
    return value;
  };
  const leaseBackend = commandLine['lease-backend'] ?? host?.['lease-backend'] ?? (commandLine['under-sanlock'] || (await sanlockDaemonRunning(execaRunner)) ? 'sanlock' : undefined);
  if (leaseBackend === undefined) {
    throw new InvalidConfigError(
      `no SPM lease backend chosen and the sanlock daemon does not answer here: start it (systemctl enable --now sanlock) for the cluster lock manager, or choose the built-in lease with --lease-backend storage ('lease-backend = storage' in ${commandLine.config})`,
    );
  }
  const ids = commandLine.ids ?? host?.ids;
  const doorbellAddress = commandLine.doorbell === undefined ? host?.doorbell : parseListenAddress(commandLine.doorbell, '--doorbell');
  return {
    ...merged,
    mailbox: required(merged.mailbox, 'mailbox', 'mailbox', 'the mailbox volume'),
    lease: required(commandLine.lease ?? host?.lease, 'lease', 'lease', 'the lease volume'),
    'host-id': required(merged['host-id'], 'host-id', 'host-id', "this host's id"),
    'lease-backend': leaseBackend,
    'lease-expiry': commandLine['lease-expiry'] ?? host?.['lease-expiry'] ?? DEFAULT_LEASE_EXPIRY_SECONDS,
    lockspace: commandLine.lockspace ?? host?.lockspace ?? DEFAULT_LOCKSPACE,
    ...(ids !== undefined ? { ids } : {}),
    ...(doorbellAddress ? { doorbellAddress } : {}),
  };
}

/** The supervising process: joins the lockspace, then keeps a serving process running under the sanlock lease. */
async function superviseSanlock(argv: SpmArguments, logger: Logger, signal: AbortSignal): Promise<void> {
  if (!argv.ids) throw new InvalidConfigError(`the sanlock lease backend needs the lockspace volume: give --ids, or set 'ids' in ${argv.config}`);
  const placement: SanlockPlacement = { lockspace: argv.lockspace, hostId: argv['host-id'], idsPath: argv.ids, leasesPath: argv.lease };
  logger.info({ lockspace: argv.lockspace }, 'joining the sanlock lockspace');
  await joinLockspace(execaRunner, placement, argv['sanlock-io-timeout']);
  // The same command line again, marked as running under the lease: sanlock execs it in the process that holds the lease.
  const heartbeatFile = path.join(HEARTBEAT_DIR, `spm-heartbeat-${process.pid}`);
  const watching = argv['stall-timeout'] > 0;
  if (watching) await mkdir(HEARTBEAT_DIR, { recursive: true });
  const command = [process.execPath, ...process.execArgv, process.argv[1]!, ...process.argv.slice(2), '--under-sanlock', ...(watching ? ['--heartbeat-file', heartbeatFile] : [])];
  try {
    await superviseUnderLease({
      placement, command, clock: systemClock, logger, signal, run: execaRunner,
      ...(argv['sanlock-io-timeout'] ? { ioTimeoutSeconds: argv['sanlock-io-timeout'] } : {}),
      ...(watching ? { watchdog: { heartbeatFile, stallTimeoutMs: argv['stall-timeout'] * 1000 } } : {}),
    });
  } finally {
    await rm(heartbeatFile, { force: true });
  }
}
