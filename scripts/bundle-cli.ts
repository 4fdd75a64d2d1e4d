/**
 * Bundles the `tideline` command into dist/cli/ and the hook's node half into
 * dist/hook/, after tsc has checked and compiled the sources (npm run build
 * does both):
 *
 * - dist/cli/tideline.cjs: what the package runs (its bin, /usr/bin/tideline).
 *   src/cli/launcher.ts and what the quick commands (`--version`, `status`,
 *   `policy show`) reach, in one CommonJS file. Node resolves, reads and
 *   compiles each ES module on its own, through its module loader, and these
 *   commands would otherwise load a dozen files or more before a few
 *   milliseconds of work; one CommonJS file is the cheapest thing node can
 *   start (bench figure 7).
 * - dist/cli/main.js and dist/cli/chunks/: the full command (src/cli/main.ts)
 *   as ES modules split by esbuild, which the launcher imports for everything
 *   else. Each command still loads only its own modules, and a module shared
 *   by several commands sits in one chunk, so it exists once per process.
 * - dist/hook/main.cjs: src/hook/main.ts, what hooks/qemu starts when the
 *   domain XML must be read and no agent follows the spool: a VM start waits
 *   for it, so it is one CommonJS file for the same reason.
 *
 * npm packages stay outside the bundles and load from node_modules as before.
 * Usage: node --import tsx scripts/bundle-cli.ts
 */
import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { build, type BuildOptions } from 'esbuild';

const root = path.resolve(import.meta.dirname, '..');
// Built beside the live bundles, then moved in file by file (below): a build
// while the command runs (the RPM test builds the package while other tests
// start tideline) must never leave a moment with no dist/cli/main.js.
const staging = path.join(root, 'dist', `.bundle-${process.pid}`);
const outdir = path.join(staging, 'cli');
const hookOutdir = path.join(staging, 'hook');

const common: BuildOptions = {
  absWorkingDir: root,
  bundle: true,
  platform: 'node',
  target: 'node20',
  packages: 'external',
  sourcemap: true,
  logLevel: 'warning',
};

await rm(staging, { recursive: true, force: true });
await build({
  ...common,
  entryPoints: ['src/cli/launcher.ts'],
  outfile: path.join(outdir, 'tideline.cjs'),
  format: 'cjs',
  // The full command is the ES module bundle next to it, imported only when needed.
  external: ['./main.js'],
});
await build({
  ...common,
  entryPoints: ['src/cli/main.ts'],
  outdir,
  entryNames: '[name]',
  chunkNames: 'chunks/[name]-[hash]',
  splitting: true,
  format: 'esm',
});
await build({
  ...common,
  entryPoints: ['src/hook/main.ts'],
  outfile: path.join(hookOutdir, 'main.cjs'),
  format: 'cjs',
});

/** Every file below `directory`, as paths relative to it. */
async function filesBelow(directory: string): Promise<string[]> {
  const entries = await readdir(directory, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((entry) => entry.isFile()).map((entry) => path.relative(directory, path.join(entry.parentPath, entry.name)));
}

/**
 * Each new file renamed over the old one (atomic: a reader sees one or the
 * other), chunks before the entry files that import them; then the files of
 * the older build that the new one no longer has (chunk names carry a
 * content hash, so old ones would only pile up).
 */
for (const folder of ['cli', 'hook']) {
  const from = path.join(staging, folder);
  const to = path.join(root, 'dist', folder);
  const fresh = await filesBelow(from);
  const ordered = [...fresh.filter((file) => file.startsWith('chunks')), ...fresh.filter((file) => !file.startsWith('chunks'))];
  for (const file of ordered) {
    await mkdir(path.dirname(path.join(to, file)), { recursive: true });
    await rename(path.join(from, file), path.join(to, file));
  }
  for (const file of await filesBelow(to)) if (!fresh.includes(file)) await rm(path.join(to, file), { force: true });
}
await rm(staging, { recursive: true, force: true });
