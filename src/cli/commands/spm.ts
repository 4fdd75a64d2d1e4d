import type { CommandModule } from 'yargs';
import { parseListenAddress } from '../../config/listen-address.js';
import { serveMetrics } from '../../metrics/server.js';
import { SpmMetrics } from '../../spm/spm-metrics.js';
import { InvalidConfigError } from '../../errors.js';
import { openStorageLease, timingForExpiry } from '../../lease/open-storage-lease.js';
import { HeldBySanlock, joinLockspace, superviseUnderLease, type SanlockPlacement } from '../../lease/sanlock.js';
import type { Lease } from '../../lease/types.js';
import { createLogger, type Logger } from '../../log/logger.js';
import { Mailbox } from '../../mailbox/mailbox.js';
import { runSpm } from '../../spm/spm-daemon.js';
import { systemClock } from '../../util/clock.js';
import { execaRunner } from '../../util/runner.js';
import { abortOnSignals } from '../failure.js';
import { openStoragePlugin, storageOptions, type StorageArguments } from '../storage-options.js';

interface SpmArguments extends StorageArguments {
  mailbox: string;
  lease: string;
  'host-id': number;
  'lease-backend': 'storage' | 'sanlock';
  'lease-expiry': number;
  lockspace: string;
  ids?: string;
  'sanlock-io-timeout'?: number;
  'under-sanlock': boolean;
  'request-delay': number;
  'metrics-listen'?: string;
}

export const spmCommand: CommandModule<object, SpmArguments> = {
  command: 'spm',
  describe: "Serve the hosts' extension requests while holding the SPM lease (run on every host; one serves, the others stand by)",
  builder: (yargs) =>
    storageOptions(yargs)
      .option('mailbox', { type: 'string', demandOption: true, describe: 'Mailbox volume' })
      .option('lease', { type: 'string', demandOption: true, describe: 'Lease volume: the built-in lease, or the sanlock resource volume' })
      .option('host-id', { type: 'number', demandOption: true, describe: "This host's id (1..max hosts), distinct on every host" })
      .option('lease-backend', { choices: ['storage', 'sanlock'] as const, default: 'storage' as const, describe: 'sanlock (production, needs the sanlock daemon) or the built-in storage lease' })
      .option('lease-expiry', { type: 'number', default: 15, describe: 'Built-in lease: seconds after which a silent SPM is presumed dead and replaced' })
      .option('lockspace', { type: 'string', default: 'tideline', describe: 'sanlock: lockspace name' })
      .option('ids', { type: 'string', describe: 'sanlock: volume of the lockspace (host delta leases)' })
      .option('sanlock-io-timeout', { type: 'number', describe: 'sanlock: io_timeout in seconds when joining the lockspace' })
      .option('metrics-listen', { type: 'string', describe: 'Serve Prometheus metrics on HOST:PORT, e.g. 127.0.0.1:9472 (with sanlock: by the process holding the lease)' })
      .option('under-sanlock', { type: 'boolean', default: false, hidden: true })
      .option('request-delay', { type: 'number', default: 0, alias: 'extend-delay', describe: 'Testing: milliseconds added before every request is carried out, as slow storage would' }),
  handler: async (argv) => {
    const logger = createLogger().child({ hostId: argv['host-id'], role: 'spm' });
    const signals = abortOnSignals();
    try {
      const metricsListen = argv['metrics-listen'] === undefined ? undefined : parseListenAddress(argv['metrics-listen'], '--metrics-listen');
      if (argv['lease-backend'] === 'sanlock' && !argv['under-sanlock']) {
        await superviseSanlock(argv, logger, signals.signal);
        return;
      }
      if (!(argv['lease-expiry'] >= 0.5 && argv['lease-expiry'] <= 600)) throw new InvalidConfigError(`--lease-expiry ${argv['lease-expiry']} must be between 0.5 and 600 seconds`);
      const mailbox = await Mailbox.open(argv.mailbox);
      try {
        mailbox.assertHostId(argv['host-id']);
        const plugin = await openStoragePlugin(argv, 'spm');
        const lease: Lease = argv['under-sanlock']
          ? new HeldBySanlock()
          : await openStorageLease({ path: argv.lease, hostId: argv['host-id'], maxHosts: mailbox.maxHosts, timing: timingForExpiry(argv['lease-expiry'] * 1000), clock: systemClock, logger });
        const metrics = new SpmMetrics();
        const server = metricsListen ? await serveMetrics(metrics.registry, metricsListen.host, metricsListen.port) : undefined;
        if (metricsListen) logger.info(metricsListen, 'serving Prometheus metrics on /metrics');
        try {
          await runSpm({ mailbox, plugin, lease, clock: systemClock, logger, run: execaRunner, signal: signals.signal, requestDelayMs: argv['request-delay'], metrics });
        } finally {
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

/** The supervising process: joins the lockspace, then keeps a serving process running under the sanlock lease. */
async function superviseSanlock(argv: SpmArguments, logger: Logger, signal: AbortSignal): Promise<void> {
  if (!argv.ids) throw new InvalidConfigError('--lease-backend sanlock needs --ids, the lockspace volume');
  const placement: SanlockPlacement = { lockspace: argv.lockspace, hostId: argv['host-id'], idsPath: argv.ids, leasesPath: argv.lease };
  logger.info({ lockspace: argv.lockspace }, 'joining the sanlock lockspace');
  await joinLockspace(execaRunner, placement, argv['sanlock-io-timeout']);
  // The same command line again, marked as running under the lease: sanlock execs it in the process that holds the lease.
  const command = [process.execPath, ...process.execArgv, process.argv[1]!, ...process.argv.slice(2), '--under-sanlock'];
  await superviseUnderLease({ placement, command, clock: systemClock, logger, signal, run: execaRunner, ...(argv['sanlock-io-timeout'] ? { ioTimeoutSeconds: argv['sanlock-io-timeout'] } : {}) });
}
