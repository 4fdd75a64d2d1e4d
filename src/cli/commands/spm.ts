import type { CommandModule } from 'yargs';
import { InvalidConfigError } from '../../errors.js';
import { openStorageLease, timingForExpiry } from '../../lease/open-storage-lease.js';
import { createLogger } from '../../log/logger.js';
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
  'lease-expiry': number;
}

export const spmCommand: CommandModule<object, SpmArguments> = {
  command: 'spm',
  describe: "Serve the hosts' extension requests while holding the SPM lease (run on every host; one serves, the others stand by)",
  builder: (yargs) =>
    storageOptions(yargs)
      .option('mailbox', { type: 'string', demandOption: true, describe: 'Mailbox volume' })
      .option('lease', { type: 'string', demandOption: true, describe: 'Lease volume of the built-in storage lease' })
      .option('host-id', { type: 'number', demandOption: true, describe: "This host's id (1..max hosts), distinct on every host" })
      .option('lease-expiry', { type: 'number', default: 15, describe: 'Seconds after which a silent SPM is presumed dead and replaced' }),
  handler: async (argv) => {
    if (!(argv['lease-expiry'] >= 0.5 && argv['lease-expiry'] <= 600)) throw new InvalidConfigError(`--lease-expiry ${argv['lease-expiry']} must be between 0.5 and 600 seconds`);
    const logger = createLogger().child({ hostId: argv['host-id'], role: 'spm' });
    const mailbox = await Mailbox.open(argv.mailbox);
    mailbox.assertHostId(argv['host-id']);
    const plugin = await openStoragePlugin(argv);
    const lease = await openStorageLease({ path: argv.lease, hostId: argv['host-id'], maxHosts: mailbox.maxHosts, timing: timingForExpiry(argv['lease-expiry'] * 1000), clock: systemClock, logger });
    const signals = abortOnSignals();
    try {
      await runSpm({ mailbox, plugin, lease, clock: systemClock, logger, run: execaRunner, signal: signals.signal });
    } finally {
      signals.dispose();
      await mailbox.close();
    }
  },
};
