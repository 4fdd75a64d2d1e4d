import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { commandEntryPoint } from '../../../src/cli/installation.js';

/** The `tideline` command as it ships: the bundle `npm run build` makes (which `npm test` runs first). */
const BUILT_CLI = commandEntryPoint();

let checked = false;

/**
 * BUILT_CLI, after making sure it was built from the sources as they are now:
 * a test run against a bundle older than an edited source would test code
 * that is no longer there.
 */
export function builtCli(): string {
  if (checked) return BUILT_CLI;
  let built: number;
  try {
    built = statSync(BUILT_CLI).mtimeMs;
  } catch {
    throw new Error(`${BUILT_CLI} is missing: run 'npm run build' (npm test does)`);
  }
  const newer = newestSource(['src', 'plugins'].map((folder) => path.resolve(folder)));
  if (newer.mtimeMs > built) throw new Error(`${newer.file} changed after ${BUILT_CLI} was built: run 'npm run build' (npm test does)`);
  checked = true;
  return BUILT_CLI;
}

function newestSource(folders: string[]): { file: string; mtimeMs: number } {
  let newest = { file: '', mtimeMs: 0 };
  for (const folder of folders) {
    for (const entry of readdirSync(folder, { recursive: true, withFileTypes: true })) {
      if (!entry.isFile() || !entry.name.endsWith('.ts')) continue;
      const file = path.join(entry.parentPath, entry.name);
      const { mtimeMs } = statSync(file);
      if (mtimeMs > newest.mtimeMs) newest = { file, mtimeMs };
    }
  }
  return newest;
}
