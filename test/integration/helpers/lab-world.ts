import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { detachLoopsUnder, initLoopDomain, LoopPlugin } from '../../../plugins/loop/index.js';
import { ensureBootImage, defaultCacheDir, type BootImage } from '../../../src/lab/boot-image.js';
import { LabVm, type LabVmOptions } from '../../../src/lab/lab-vm.js';
import { silentLogger } from '../../../src/log/logger.js';
import { execaRunner } from '../../../src/util/runner.js';
import { GiB } from '../../../src/util/sizes.js';

/**
 * A world for one integration test: its own directory (a loop storage domain
 * in it), its own QEMUs. `dispose` removes exactly what it made, even after a
 * failure; `sweepLeftovers` removes what a crashed earlier run left behind,
 * found by the owner PID written into the directory name.
 */
const ROOT = '/var/tmp';
const PREFIX = 'tideline-test-';

let bootImage: Promise<BootImage> | undefined;

export function labBootImage(): Promise<BootImage> {
  bootImage ??= ensureBootImage({ cacheDir: defaultCacheDir(), run: execaRunner, logger: silentLogger });
  return bootImage;
}

export class LabWorld {
  readonly vms: LabVm[] = [];

  private constructor(readonly dir: string, readonly plugin: LoopPlugin) {}

  static async create(capacityBytes = 64 * GiB): Promise<LabWorld> {
    await sweepLeftovers();
    const dir = await mkdtemp(path.join(ROOT, `${PREFIX}${process.pid}-`));
    const domain = path.join(dir, 'domain');
    await initLoopDomain(domain, capacityBytes);
    return new LabWorld(dir, await LoopPlugin.open(domain, execaRunner));
  }

  async startVm(options: Partial<LabVmOptions> & { name: string; writeMib: number }): Promise<LabVm> {
    const vm = await LabVm.create({
      workDir: this.dir,
      boot: await labBootImage(),
      plugin: this.plugin,
      run: execaRunner,
      virtualBytes: 4 * GiB,
      initialBytes: 128 * 1024 * 1024,
      timeoutMs: 10 * 60_000,
      ...options,
    });
    this.vms.push(vm);
    if (vm.qemu.pid) await writeFile(path.join(this.dir, `${options.name}.pid`), String(vm.qemu.pid));
    return vm;
  }

  async dispose(): Promise<void> {
    for (const vm of this.vms) await vm.destroy().catch(() => undefined);
    await detachLoopsUnder(execaRunner, this.dir);
    await rm(this.dir, { recursive: true, force: true });
  }
}

async function sweepLeftovers(): Promise<void> {
  await mkdir(ROOT, { recursive: true });
  for (const name of await readdir(ROOT)) {
    const owner = Number(/^tideline-test-(\d+)-/.exec(name)?.[1]);
    if (!owner || owner === process.pid || isAlive(owner)) continue;
    const dir = path.join(ROOT, name);
    for (const file of await readdir(dir).catch(() => [] as string[])) {
      if (!file.endsWith('.pid')) continue;
      const pid = Number(await readFile(path.join(dir, file), 'utf8').catch(() => ''));
      // Only a QEMU this suite started (its PID file is in our directory) and still running it.
      if (pid && isAlive(pid) && (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).includes(dir)) process.kill(pid, 'SIGKILL');
    }
    await detachLoopsUnder(execaRunner, dir);
    await rm(dir, { recursive: true, force: true });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
