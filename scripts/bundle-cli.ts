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
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { build, type BuildOptions } from 'esbuild';

const root = path.resolve(import.meta.dirname, '..');
const outdir = path.join(root, 'dist', 'cli');
const hookOutdir = path.join(root, 'dist', 'hook');

const common: BuildOptions = {
  absWorkingDir: root,
  bundle: true,
  platform: 'node',
  target: 'node20',
  packages: 'external',
  sourcemap: true,
  logLevel: 'warning',
};

// Chunk names carry a content hash: an older build's chunks would only pile up.
await Promise.all([outdir, hookOutdir].map((folder) => rm(folder, { recursive: true, force: true })));
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
