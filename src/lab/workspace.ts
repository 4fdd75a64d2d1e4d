import { isAlive } from '../util/process-alive.js';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { detachLoopsUnder, initLoopDomain, LoopPlugin } from '../../plugins/loop/index.js';
import type { Runner } from '../util/runner.js';

/**
 * A scratch world for one lab run or one integration test: a directory under
 * /var/tmp holding a loop storage domain, sockets, console logs and the PID
 * files of the QEMUs started in it. The owner's PID is part of the directory
 * name, so a later run can tell a crashed run's leftovers from a live run's
 * directory and remove only those, killing only QEMUs whose command line
 * names that directory.
 */
export const WORKSPACE_ROOT = '/var/tmp';

export class Workspace {
  private constructor(
    readonly dir: string,
    readonly plugin: LoopPlugin,
    private readonly run: Runner,
  ) {}

  get domainDir(): string {
    return path.join(this.dir, 'domain');
  }

  static async create(options: { prefix: string; capacityBytes: number; run: Runner }): Promise<Workspace> {
    await sweepLeftovers(options.prefix, options.run);
    const dir = await mkdtemp(path.join(WORKSPACE_ROOT, `${options.prefix}${process.pid}-`));
    const domain = path.join(dir, 'domain');
    await initLoopDomain(domain, options.capacityBytes);
    return new Workspace(dir, await LoopPlugin.open(domain, options.run), options.run);
  }

  /** Records a process started for this workspace so a later sweep can stop it if we crash. */
  async recordPid(name: string, pid: number | undefined): Promise<void> {
    if (pid) await writeFile(path.join(this.dir, `${name}.pid`), String(pid));
  }

  /** Detaches every loop device backed by a file in here; with `keepFiles`, the files stay for inspection. */
  async dispose(options: { keepFiles?: boolean } = {}): Promise<void> {
    await detachLoopsUnder(this.run, this.dir);
    if (!options.keepFiles) await rm(this.dir, { recursive: true, force: true });
  }
}

async function sweepLeftovers(prefix: string, run: Runner): Promise<void> {
  await mkdir(WORKSPACE_ROOT, { recursive: true });
  const ownerPattern = new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(\\d+)-`);
  for (const name of await readdir(WORKSPACE_ROOT)) {
    const owner = Number(ownerPattern.exec(name)?.[1]);
    if (!owner || owner === process.pid || isAlive(owner)) continue;
    const dir = path.join(WORKSPACE_ROOT, name);
    for (const file of await readdir(dir).catch(() => [] as string[])) {
      if (!file.endsWith('.pid')) continue;
      const pid = Number(await readFile(path.join(dir, file), 'utf8').catch(() => ''));
      // Ours if its command line or environment names the directory (a daemon started with a preloaded library from it).
      const identity = pid && isAlive(pid) ? (await Promise.all(['cmdline', 'environ'].map((part) => readFile(`/proc/${pid}/${part}`, 'utf8').catch(() => '')))).join('\0') : '';
      if (identity.includes(dir)) process.kill(pid, 'SIGKILL');
    }
    await detachLoopsUnder(run, dir);
    await rm(dir, { recursive: true, force: true });
  }
}
