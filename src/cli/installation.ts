import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The root of this installation (the folder holding dist/ and hooks/), whether this runs from dist or from the sources (src/cli). */
export function installationRoot(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  return here.includes(`${path.sep}dist${path.sep}`) ? here.slice(0, here.lastIndexOf(`${path.sep}dist${path.sep}`)) : path.resolve(here, '../..');
}

/** The `tideline` command as the package runs it: the launcher bundle (scripts/bundle-cli.ts). */
export function commandEntryPoint(): string {
  return path.join(installationRoot(), 'dist', 'cli', 'tideline.cjs');
}

/** The hook's node half, bundled into one file (scripts/bundle-cli.ts). */
export function hookEntryPoint(): string {
  return path.join(installationRoot(), 'dist', 'hook', 'main.cjs');
}
