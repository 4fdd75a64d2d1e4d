import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { DEFAULT_HOOK_SPOOL } from '../../agent/spool-protocol.js';
import { DEFAULT_CONFIG_FILE } from '../../config/host-config.js';
import { checkHook } from '../../doctor/checks.js';
import { hookEntryPoint, installationRoot } from '../installation.js';

/**
 * `tideline hook install|uninstall`: for hosts not installed from the RPM.
 * libvirtd looks for qemu hooks only when it starts: where this is the host's
 * first one, install says (as `tideline doctor` does) that libvirtd must be
 * restarted once.
 */
const HOOK_PATH = 'etc/libvirt/hooks/qemu.d/tideline';

/**
 * The packaged hook (hooks/qemu, the file the RPM installs) with the node and
 * entry point of this installation, so both ways of installing run one script.
 */
export async function hookScript(options: { entryPoint?: string; nodePath?: string; spool?: string; config?: string } = {}): Promise<string> {
  const packaged = await readFile(path.join(installationRoot(), 'hooks', 'qemu'), 'utf8');
  const quote = (value: string) => `'${value.replace(/'/g, `'\\''`)}'`;
  return packaged
    .replace(/^TIDELINE_NODE=.*$/m, `TIDELINE_NODE=${quote(options.nodePath ?? process.execPath)}`)
    .replace(/^TIDELINE_HOOK_MAIN=.*$/m, `TIDELINE_HOOK_MAIN=${quote(options.entryPoint ?? hookEntryPoint())}`)
    .replace(/^TIDELINE_HOOK_SPOOL_DEFAULT=.*$/m, `TIDELINE_HOOK_SPOOL_DEFAULT=${quote(options.spool ?? DEFAULT_HOOK_SPOOL)}`)
    .replace(/^TIDELINE_CONFIG_DEFAULT=.*$/m, `TIDELINE_CONFIG_DEFAULT=${quote(options.config ?? DEFAULT_CONFIG_FILE)}`);
}

export const hookCommand: CommandModule = {
  command: 'hook',
  describe: 'Install or remove the libvirt hook',
  builder: (yargs: Argv) =>
    yargs
      .command<{ root: string; spool: string; config: string }>(
        'install',
        'Install the hook as /etc/libvirt/hooks/qemu.d/tideline',
        (command) =>
          command
            .option('root', { type: 'string', default: '/', describe: 'Install below this directory' })
            .option('spool', { type: 'string', default: DEFAULT_HOOK_SPOOL, describe: "Where the hook leaves domain events for the agent (the agent's --hook-spool)" })
            .option('config', { type: 'string', default: DEFAULT_CONFIG_FILE, describe: 'The host configuration the hook reads (libvirtd passes hooks no environment of its own)' }),
        async (argv) => {
          const target = path.join(argv.root, HOOK_PATH);
          await mkdir(path.dirname(target), { recursive: true });
          await writeFile(target, await hookScript({ spool: argv.spool, config: argv.config }));
          await chmod(target, 0o755);
          process.stdout.write(`hook installed: ${target}\n`);
          if (argv.root === '/') {
            const finding = await checkHook(target);
            if (finding.status !== 'ok') process.stderr.write(`tideline: ${finding.detail}\n`);
          }
        },
      )
      .command<{ root: string }>(
        'uninstall',
        'Remove the hook',
        (command) => command.option('root', { type: 'string', default: '/' }),
        async (argv) => {
          const target = path.join(argv.root, HOOK_PATH);
          await rm(target, { force: true });
          process.stdout.write(`hook removed: ${target}\n`);
        },
      )
      .demandCommand(1, 'name an action: install or uninstall'),
  handler: () => undefined,
};
