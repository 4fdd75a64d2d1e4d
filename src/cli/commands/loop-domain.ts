import type { CommandModule } from 'yargs';
import { DEFAULT_LOOP_EXTENT_BYTES, initLoopDomain } from '../../../plugins/loop/index.js';
import { parseSize } from '../../util/sizes.js';
import { InvalidConfigError } from '../../errors.js';

interface LoopDomainArguments {
  directory: string;
  capacity: string;
  extent: string;
}

/** A loop storage domain stands in for a shared VG on a single host (lab, tests, trying tideline out). */
export const loopDomainCommand: CommandModule<object, LoopDomainArguments> = {
  command: 'loop-domain init <directory>',
  describe: 'Create a loop storage domain: a directory of sparse volume files standing in for a shared VG',
  builder: (yargs) =>
    yargs
      .positional('directory', { type: 'string', demandOption: true })
      .option('capacity', { type: 'string', demandOption: true, describe: 'Total size the domain may hand out (like the VG size)' })
      .option('extent', { type: 'string', default: `${DEFAULT_LOOP_EXTENT_BYTES / 1024 / 1024}M`, describe: 'Volume sizes are multiples of this' }),
  handler: async (argv) => {
    if (!argv.directory.startsWith('/')) throw new InvalidConfigError(`directory '${argv.directory}' must be an absolute path`);
    const capacity = parseSize(argv.capacity, '--capacity');
    const extent = parseSize(argv.extent, '--extent');
    if (extent <= 0 || capacity < extent) throw new InvalidConfigError(`--capacity (${argv.capacity}) must hold at least one extent (${argv.extent})`);
    await initLoopDomain(argv.directory, capacity, extent);
    process.stdout.write(`loop storage domain created in ${argv.directory}\n`);
  },
};
