import type { Argv } from 'yargs';
import { LoopPlugin } from '../../plugins/loop/index.js';
import { LvmPlugin, type LvmRole } from '../../plugins/lvm/index.js';
import type { StoragePlugin } from '../../plugins/types.js';
import { InvalidConfigError } from '../errors.js';
import { execaRunner } from '../util/runner.js';

/** The storage domain flags shared by `agent` and `spm`: a loop directory (lab, single host) or an LVM VG (shared LUN). */
export interface StorageArguments {
  domain?: string;
  vg?: string;
  activation: boolean;
  'loop-view'?: string;
}

export function storageOptions<T>(yargs: Argv<T>) {
  return yargs
    .option('domain', { type: 'string', describe: 'Loop storage domain directory (lab, single host)' })
    .option('vg', { type: 'string', describe: 'LVM volume group of the storage domain (shared LUN)' })
    .option('activation', { type: 'boolean', default: true, describe: 'LVs can be activated here; --no-activation where device-mapper is missing (metadata only)' })
    .option('loop-view', { type: 'string', describe: "Loop domain shared by several hosts on one machine: this host's own loop devices (DIR/hosts/NAME), as each hypervisor has its own device-mapper table" });
}

/**
 * `role`: 'spm' for the process that changes the domain (the SPM, or an agent
 * extending on its own without a mailbox); 'host' for everything else, which
 * then runs LVM read-only (docs/storage.md).
 */
export async function openStoragePlugin(argv: StorageArguments, role: LvmRole): Promise<StoragePlugin> {
  if (argv.domain && argv.vg) throw new InvalidConfigError('give either --domain (loop) or --vg (LVM), not both');
  if (argv.vg && argv['loop-view'] !== undefined) throw new InvalidConfigError('--loop-view is for loop domains; an LVM host has its own device-mapper table already');
  if (argv.vg) return LvmPlugin.open({ vg: argv.vg, run: execaRunner, activation: argv.activation, role });
  if (argv.domain) {
    if (!argv.domain.startsWith('/')) throw new InvalidConfigError(`--domain '${argv.domain}' must be an absolute path`);
    return LoopPlugin.open(argv.domain, execaRunner, argv['loop-view'] === undefined ? {} : { hostView: argv['loop-view'] });
  }
  throw new InvalidConfigError('name the storage domain with --vg VG (LVM) or --domain DIR (loop)');
}
