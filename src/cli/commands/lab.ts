import path from 'node:path';
import type { CommandModule } from 'yargs';
import { parseLabSettings } from '../../config/lab-settings.js';
import { LAB_EXIT_CODES, prepareLab, runLab } from '../../lab/lab-run.js';
import { renderSummary } from '../../lab/lab-view.js';
import { systemClock } from '../../util/clock.js';
import { execaRunner } from '../../util/runner.js';
import { abortOnSignals } from '../failure.js';

interface LabArguments {
  write: string;
  chunk: string;
  'free-target': string;
  'initial-size': string;
  'virtual-size': string;
  monitor: boolean;
  'extend-delay': number;
  adaptive: boolean;
  keep: boolean;
  timeout: number;
  'prepare-only': boolean;
  /** false with --no-chart. */
  chart?: string | false;
}

export const labCommand: CommandModule<object, LabArguments> = {
  command: 'lab',
  describe: 'Run a QEMU guest on a thin volume that grows under it while it writes, then verify its data',
  builder: (yargs) =>
    yargs
      .option('write', { type: 'string', default: '2G', describe: 'How much the guest writes (multiple of 16M)' })
      .option('chunk', { type: 'string', default: '128M', describe: 'How much one extension adds' })
      .option('free-target', { type: 'string', default: '96M', describe: 'Extend when less than this is free above the high-water mark' })
      .option('initial-size', { type: 'string', default: '128M', describe: 'Size of the thin volume at the start' })
      .option('virtual-size', { type: 'string', default: '4G', describe: 'Virtual size of the qcow2 disk' })
      .option('monitor', { type: 'boolean', default: true, describe: 'Run the monitor; --no-monitor shows the ENOSPC pause that nothing resolves' })
      .option('extend-delay', { type: 'number', default: 0, describe: 'Milliseconds added to each extension, as a slow storage manager would (forces ENOSPC pauses)' })
      .option('adaptive', { type: 'boolean', default: false, describe: 'Grow chunk and free target with the measured write rate' })
      .option('keep', { type: 'boolean', default: false, describe: 'Keep the work directory (volume files, logs) for inspection' })
      .option('timeout', { type: 'number', default: 600, describe: 'Seconds after which QEMU is killed whatever happens' })
      .option('chart', { type: 'string', describe: 'Where to write the SVG chart of volume size and high-water over time (default /var/tmp/tideline-lab-TIME.svg; --no-chart for none)' })
      .option('prepare-only', { type: 'boolean', default: false, describe: 'Only build the cached boot images: the lab guest, and the storage host guests of the LVM tests (setup does this)' }),
  handler: async (argv) => {
    if (argv['prepare-only']) {
      const boot = await prepareLab(execaRunner);
      process.stdout.write(`lab boot image ready: kernel ${boot.kernelVersion}, ${boot.initrd}\n`);
      const { ensureStorageHostImage } = await import('../../lab/storage-host-image.js');
      const { defaultCacheDir } = await import('../../lab/boot-image.js');
      const { createLogger } = await import('../../log/logger.js');
      const storageHost = await ensureStorageHostImage({ cacheDir: defaultCacheDir(), run: execaRunner, logger: createLogger() });
      process.stdout.write(`storage host boot image ready: ${storageHost.initrd}\n`);
      return;
    }
    const settings = parseLabSettings({
      write: argv.write,
      chunk: argv.chunk,
      freeTarget: argv['free-target'],
      initialSize: argv['initial-size'],
      virtualSize: argv['virtual-size'],
      monitor: argv.monitor,
      extendDelayMs: argv['extend-delay'],
      adaptive: argv.adaptive,
      keep: argv.keep,
      timeoutSeconds: argv.timeout,
      chart: argv.chart === false ? '' : typeof argv.chart === 'string' ? path.resolve(argv.chart) : `/var/tmp/tideline-lab-${new Date().toISOString().replace(/[:.]/g, '-')}.svg`,
    });
    const signals = abortOnSignals();
    try {
      const outcome = await runLab({ settings, run: execaRunner, clock: systemClock, out: process.stdout, signal: signals.signal });
      process.stdout.write(`${renderSummary(outcome)}\n`);
      process.exitCode = LAB_EXIT_CODES[outcome.verdict];
    } finally {
      signals.dispose();
    }
  },
};
