#!/usr/bin/env node
import { realpathSync } from 'node:fs';
import path from 'node:path';
import { reportFailure } from './failure.js';
import { ranQuickly } from './quick-commands.js';

/**
 * What `tideline` runs: the build bundles this file alone into one CommonJS
 * file (dist/cli/tideline.cjs), so the quick commands (`--version`, `status`,
 * `policy show`) cost node one file to read and compile instead of a tree of
 * ES modules: measured here, `policy show` in 37 ms against 49 ms through the
 * ES module bundle, with node itself starting in 24 ms. Everything else is
 * handed to the full command, src/cli/main.ts (its ES module bundle,
 * dist/cli/main.js), which reports its own failures.
 */
const args = process.argv.slice(2);
const scriptDirectory = path.dirname(realpathSync(process.argv[1]!));
ranQuickly(args, scriptDirectory)
  .then(async (ran) => {
    if (!ran) await import('./main.js');
  })
  .catch(reportFailure);
