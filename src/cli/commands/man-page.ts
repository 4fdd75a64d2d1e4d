import type { CommandModule } from 'yargs';
import { execa } from 'execa';
import { manPage } from '../man-page.js';

/** Every command's help as `--help` prints it, 80 columns wide (the width a terminal shows a manual at). */
async function helpOf(args: string[]): Promise<string> {
  const script = process.argv[1]!;
  const result = await execa(process.execPath, [...process.execArgv, script, ...args, '--help'], { timeout: 60_000, env: { COLUMNS: '80' } });
  return result.stdout;
}

/** Hidden: the packaging runs it to ship tideline(1), made from the help texts. */
export const manPageCommand: CommandModule<object, { 'package-version': string }> = {
  command: 'man-page',
  describe: false,
  builder: (yargs) => yargs.option('package-version', { type: 'string', default: 'unknown' }),
  handler: async (argv) => {
    const overview = await helpOf([]);
    const names = [...overview.matchAll(/^ {2}tideline ([a-z-]+)/gm)].map((match) => match[1]!).filter((name) => name !== 'completion');
    const commands = await Promise.all(names.map(async (name) => ({ name: `tideline ${name}`, help: await helpOf([name]) })));
    process.stdout.write(manPage({ version: argv['package-version'], dateIso: new Date().toISOString().slice(0, 10), overview, commands }));
  },
};
