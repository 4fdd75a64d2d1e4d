import { ensureBootImage, defaultCacheDir, type BootImage } from '../../../src/lab/boot-image.js';
import { LabVm, type LabVmOptions } from '../../../src/lab/lab-vm.js';
import { Workspace } from '../../../src/lab/workspace.js';
import { silentLogger } from '../../../src/log/logger.js';
import { execaRunner } from '../../../src/util/runner.js';
import { GiB, MiB } from '../../../src/util/sizes.js';

/**
 * A world for one integration test: a workspace with its own loop storage
 * domain and its own QEMUs. `dispose` removes exactly what it made, even after
 * a failure; creating one sweeps what a crashed earlier run left behind.
 */
let bootImage: Promise<BootImage> | undefined;

export function labBootImage(): Promise<BootImage> {
  bootImage ??= ensureBootImage({ cacheDir: defaultCacheDir(), run: execaRunner, logger: silentLogger });
  return bootImage;
}

export class LabWorld {
  readonly vms: LabVm[] = [];

  private constructor(readonly workspace: Workspace) {}

  get dir(): string {
    return this.workspace.dir;
  }

  get plugin(): Workspace['plugin'] {
    return this.workspace.plugin;
  }

  static async create(capacityBytes = 64 * GiB): Promise<LabWorld> {
    return new LabWorld(await Workspace.create({ prefix: 'tideline-test-', capacityBytes, run: execaRunner }));
  }

  async startVm(options: Partial<LabVmOptions> & { name: string; writeMib: number }): Promise<LabVm> {
    const vm = await LabVm.create({
      workDir: this.dir,
      boot: await labBootImage(),
      plugin: this.plugin,
      run: execaRunner,
      virtualBytes: 4 * GiB,
      initialBytes: 128 * MiB,
      timeoutMs: 10 * 60_000,
      ...options,
    });
    this.vms.push(vm);
    await this.workspace.recordPid(options.name, vm.qemu.pid);
    return vm;
  }

  async dispose(): Promise<void> {
    for (const vm of this.vms) await vm.destroy().catch(() => undefined);
    await this.workspace.dispose();
  }
}
