import { readFileSync } from 'node:fs';
import path from 'node:path';

/**
 * The commands admins and scripts run most, in their usual form, without
 * yargs (which alone costs more than starting node): `--version`, `status`
 * and `policy show`. False when the arguments need the full parser (help, a
 * mistake, anything else). Both ways in use it: the launcher the package
 * installs (a single CommonJS file, which node loads faster than any tree
 * of ES modules) and the full command (src/cli/main.ts).
 */
export async function ranQuickly(args: readonly string[], scriptDirectory: string): Promise<boolean> {
  if (args.length === 1 && args[0] === '--version') {
    process.stdout.write(`${packageVersion(scriptDirectory)}\n`);
    return true;
  }
  if (args[0] === 'status') return (await import('./commands/status.js')).runStatusQuickly(args.slice(1));
  if (args[0] === 'policy' && args[1] === 'show') return (await import('./commands/policy-show.js')).runPolicyShowQuickly(args.slice(2));
  return false;
}

/**
 * The version in this installation's package.json: two folders up from the
 * running script in the sources (src/cli) and the bundle (dist/cli), three
 * from tsc's output (dist/src/cli).
 */
function packageVersion(scriptDirectory: string): string {
  for (const candidate of ['../../package.json', '../../../package.json']) {
    let text: string;
    try {
      text = readFileSync(path.join(scriptDirectory, candidate), 'utf8');
    } catch {
      continue;
    }
    const manifest = JSON.parse(text) as { name?: string; version?: string };
    if (manifest.name === 'tideline' && manifest.version) return manifest.version;
  }
  return 'unknown';
}
