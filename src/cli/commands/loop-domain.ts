import type { Argv, CommandModule } from 'yargs';
import { DEFAULT_LOOP_EXTENT_BYTES, growLoopDomain, initLoopDomain } from '../../../plugins/loop/index.js';
import { formatSize, parseSize } from '../../util/sizes.js';
import { InvalidConfigError } from '../../errors.js';

function absolute(directory: string): string {
  if (!directory.startsWith('/')) throw new InvalidConfigError(`directory '${directory}' must be an absolute path`);
  return directory;
}

/** A loop storage domain stands in for a shared VG on a single host (lab, tests, trying tideline out). */
export const loopDomainCommand: CommandModule = {
  command: 'loop-domain',
  describe: 'A loop storage domain: a directory of sparse volume files standing in for a shared VG',
  builder: (yargs: Argv) =>
    yargs
      .command<{ directory: string; capacity: string; extent: string }>(
        'init <directory>',
        'Create a loop storage domain',
        (command) =>
          command
            .positional('directory', { type: 'string', demandOption: true })
            .option('capacity', { type: 'string', demandOption: true, describe: 'Total size the domain may hand out (like the VG size)' })
            .option('extent', { type: 'string', default: `${DEFAULT_LOOP_EXTENT_BYTES / 1024 / 1024}M`, describe: 'Volume sizes are multiples of this' }),
        async (argv) => {
          const capacity = parseSize(argv.capacity, '--capacity');
          const extent = parseSize(argv.extent, '--extent');
          if (extent <= 0 || capacity < extent) throw new InvalidConfigError(`--capacity (${argv.capacity}) must hold at least one extent (${argv.extent})`);
          await initLoopDomain(absolute(argv.directory), capacity, extent);
          process.stdout.write(`loop storage domain created in ${argv.directory}\n`);
        },
      )
      .command<{ directory: string; capacity: string }>(
        'grow <directory>',
        "Give the domain more capacity, as pvresize does for a VG after the LUN grew; the SPM uses it at once, and VMs paused on a full domain resume",
        (command) => command.positional('directory', { type: 'string', demandOption: true }).option('capacity', { type: 'string', demandOption: true, describe: 'The new total capacity' }),
        async (argv) => {
          const grown = await growLoopDomain(absolute(argv.directory), parseSize(argv.capacity, '--capacity'));
          process.stdout.write(`loop storage domain ${argv.directory} now holds ${formatSize(grown.capacityBytes)}\n`);
        },
      )
      .demandCommand(1, 'name an action: init or grow'),
  handler: () => undefined,
};
