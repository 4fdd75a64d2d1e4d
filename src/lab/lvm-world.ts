import { truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { LvmPlugin, type LvmRole } from '../../plugins/lvm/index.js';
import { execaRunner } from '../util/runner.js';
import { MiB } from '../util/sizes.js';
import { defaultCacheDir } from './boot-image.js';
import { StorageHost } from './storage-host.js';
import { ensureStorageHostImage } from './storage-host-image.js';
import { Workspace } from './workspace.js';

/**
 * Hypervisors sharing one LUN, where LVM runs for real: each host is a TCG
 * guest with device-mapper (src/lab/storage-host.ts), the LUN is one raw file
 * every guest attaches with share-rw=on. The first host is the SPM by
 * convention; tideline's processes run on this machine and reach each host's
 * LVM through that host's Runner, exactly as they would run it locally.
 */
export interface LvmWorldOptions {
  /** Workspace prefix: a crashed run's leftovers with it are swept (QEMUs by PID, files). */
  prefix: string;
  hosts: readonly string[];
  lunBytes: number;
  vg: string;
  extentBytes: number;
  logger: Logger;
  /** Kills every guest after this long whatever happens. */
  timeoutMs: number;
}

export class LvmWorld {
  private constructor(
    readonly options: LvmWorldOptions,
    readonly workspace: Workspace,
    readonly lunPath: string,
    private readonly hosts: Map<string, StorageHost>,
  ) {}

  static async start(options: LvmWorldOptions): Promise<LvmWorld> {
    const boot = await ensureStorageHostImage({ cacheDir: defaultCacheDir(), run: execaRunner, logger: options.logger });
    const workspace = await Workspace.create({ prefix: options.prefix, capacityBytes: MiB, run: execaRunner });
    const lunPath = path.join(workspace.dir, 'lun.img');
    const hosts = new Map<string, StorageHost>();
    try {
      await writeFile(lunPath, '');
      await truncate(lunPath, options.lunBytes);
      const started = await Promise.allSettled(
        options.hosts.map(async (name) => {
          const host = await StorageHost.start({ name, workDir: workspace.dir, boot, lunPath, timeoutMs: options.timeoutMs });
          hosts.set(name, host);
          await workspace.recordPid(`host-${name}`, host.pid);
        }),
      );
      const failed = started.find((result) => result.status === 'rejected');
      if (failed) throw failed.reason;
    } catch (error) {
      for (const host of hosts.values()) await host.stop();
      await workspace.dispose({ keepFiles: true });
      throw error;
    }
    return new LvmWorld(options, workspace, lunPath, hosts);
  }

  host(name: string): StorageHost {
    const host = this.hosts.get(name);
    if (!host) throw new Error(`no storage host ${name} in this world (hosts: ${[...this.hosts.keys()].join(', ')})`);
    return host;
  }

  /** Creates the storage domain's VG on the LUN from the named host (the SPM). */
  async createDomain(onHost: string): Promise<void> {
    await LvmPlugin.createDomain({ vg: this.options.vg, devices: ['/dev/vda'], run: this.host(onHost).run, extentBytes: this.options.extentBytes });
  }

  /** tideline's lvm plugin on a host, in a role; it finds the domain's PVs itself, as on a hypervisor. */
  plugin(onHost: string, role: LvmRole): Promise<LvmPlugin> {
    return LvmPlugin.open({ vg: this.options.vg, run: this.host(onHost).run, role, activation: true });
  }

  /** Stops every guest and removes the workspace; with `keepFiles` the LUN and console logs stay. */
  async dispose(options: { keepFiles?: boolean } = {}): Promise<void> {
    for (const host of this.hosts.values()) await host.stop();
    await this.workspace.dispose(options);
  }
}
