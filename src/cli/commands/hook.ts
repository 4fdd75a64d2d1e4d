import { chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Argv, CommandModule } from 'yargs';

/**
 * `tideline hook install|uninstall`: for hosts not installed from the RPM.
 * libvirtd picks up a script dropped into qemu.d/ from the next event on; no
 * restart is needed.
 */
const HOOK_PATH = 'etc/libvirt/hooks/qemu.d/tideline';

/** dist/src/hook/main.js of this installation, whether this runs from dist or from the sources. */
export function hookEntryPoint(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const root = here.includes(`${path.sep}dist${path.sep}`) ? here.slice(0, here.lastIndexOf(`${path.sep}dist${path.sep}`)) : path.resolve(here, '../../..');
  return path.join(root, 'dist', 'src', 'hook', 'main.js');
}

export function hookScript(entryPoint: string, nodePath = process.execPath): string {
  return `#!/bin/sh\n# tideline's libvirt hook (tideline hook install). All work happens in node.\nexec ${nodePath} ${entryPoint} "$@"\n`;
}

export const hookCommand: CommandModule = {
  command: 'hook',
  describe: 'Install or remove the libvirt hook',
  builder: (yargs: Argv) =>
    yargs
      .command<{ root: string }>(
        'install',
        'Install the hook as /etc/libvirt/hooks/qemu.d/tideline',
        (command) => command.option('root', { type: 'string', default: '/', describe: 'Install below this directory' }),
        async (argv) => {
          const target = path.join(argv.root, HOOK_PATH);
          await mkdir(path.dirname(target), { recursive: true });
          await writeFile(target, hookScript(hookEntryPoint()));
          await chmod(target, 0o755);
          process.stdout.write(`hook installed: ${target}\n`);
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
