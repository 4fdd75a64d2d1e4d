import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { initLeaseVolume } from '../../../src/lease/open-storage-lease.js';
import { Mailbox } from '../../../src/mailbox/mailbox.js';
import { LabWorld } from './lab-world.js';
import { TidelineProcess } from './tideline-process.js';

/**
 * Hosts of a cluster on this machine: a lab world (loop storage domain, QEMUs)
 * with a mailbox and a lease volume, and the `tideline` processes the test
 * starts for its hosts, all stopped by `dispose`.
 */
export class ClusterWorld {
  readonly processes: TidelineProcess[] = [];

  private constructor(
    readonly lab: LabWorld,
    readonly mailboxPath: string,
    readonly leasePath: string,
  ) {}

  static async create(maxHosts: number, capacityBytes?: number): Promise<ClusterWorld> {
    const lab = await LabWorld.create(capacityBytes);
    const world = new ClusterWorld(lab, path.join(lab.dir, 'mailbox'), path.join(lab.dir, 'leases'));
    await Mailbox.init(world.mailboxPath, { maxHosts });
    await initLeaseVolume(world.leasePath, maxHosts);
    return world;
  }

  get dir(): string {
    return this.lab.dir;
  }

  start(name: string, args: string[]): TidelineProcess {
    const process = new TidelineProcess(name, args);
    this.processes.push(process);
    return process;
  }

  /** An SPM candidate for a host, on the world's loop domain, mailbox and lease; `extraArgs` after those. */
  spm(hostId: number, leaseExpirySeconds: string, extraArgs: readonly string[] = []): TidelineProcess {
    return this.start(`spm${hostId}`, ['spm', '--lease-backend', 'storage', '--mailbox', this.mailboxPath, '--lease', this.leasePath, '--host-id', String(hostId), '--domain', this.lab.workspace.domainDir, '--lease-expiry', leaseExpirySeconds, ...extraArgs]);
  }

  /**
   * With TIDELINE_DEBUG_DIR set, keeps every process's log of a failed test
   * (CI prints only the assertion; a rerun with the variable set shows the timeline).
   */
  async keepLogsIfFailed(test: Mocha.Test | undefined, label: string): Promise<void> {
    const directory = process.env.TIDELINE_DEBUG_DIR;
    if (test?.state !== 'failed' || !directory) return;
    const dump = this.processes.map((tideline) => ({ name: tideline.name, events: tideline.events }));
    await mkdir(directory, { recursive: true });
    await writeFile(path.join(directory, `${label}-${Date.now()}.json`), JSON.stringify(dump));
  }

  async dispose(): Promise<void> {
    for (const process of this.processes) await process.kill().catch(() => undefined);
    await this.lab.dispose();
  }
}
