import type { CommandModule } from 'yargs';
import { InvalidConfigError } from '../../errors.js';
import { parseSize } from '../../util/sizes.js';

interface LvmDomainArguments {
  vg: string;
  devices: string[];
  'extent-size': string;
  activation: boolean;
}

/**
 * Makes the shared VG of a block storage domain, once, on the SPM's host:
 * PVs on the LUN's devices, a VG with oVirt's 128 MiB extents that is never
 * auto-activated at boot (docs/storage.md).
 */
export const lvmDomainCommand: CommandModule<object, LvmDomainArguments> = {
  command: 'lvm-domain create <vg> <devices..>',
  describe: 'Create the shared volume group of a block storage domain on the LUN (run once, on the SPM host)',
  builder: (yargs) =>
    yargs
      .positional('vg', { type: 'string', demandOption: true, describe: 'Name of the new volume group' })
      .positional('devices', { type: 'string', array: true, demandOption: true, describe: 'The LUN as every host sees it, e.g. /dev/mapper/36001405...' })
      .option('extent-size', { type: 'string', default: '128M', describe: 'LVM extent size: volume sizes are multiples of it' })
      .option('activation', { type: 'boolean', default: true, describe: '--no-activation where device-mapper is missing (metadata only)' }),
  handler: async (argv) => {
    for (const device of argv.devices) {
      if (!device.startsWith('/dev/')) throw new InvalidConfigError(`device '${device}' must be a block device path under /dev`);
    }
    const extentBytes = parseSize(argv['extent-size'], '--extent-size');
    const { LvmPlugin } = await import('../../../plugins/lvm/index.js');
    const { execaRunner } = await import('../../util/runner.js');
    await LvmPlugin.createDomain({ vg: argv.vg, devices: argv.devices, run: execaRunner, extentBytes, activation: argv.activation });
    process.stdout.write(`volume group ${argv.vg} created on ${argv.devices.join(', ')}; it is never auto-activated; point every host's tideline.conf at it (vg = ${argv.vg})\n`);
  },
};
