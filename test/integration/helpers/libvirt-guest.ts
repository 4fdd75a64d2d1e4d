import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { LoopPlugin } from '../../../plugins/loop/index.js';
import { parseGuestLine, type GuestLine } from '../../../src/lab/guest-report.js';
import { labDomainXml } from '../../../src/lab/libvirt-domain.js';
import { execaRunner } from '../../../src/util/runner.js';
import { VIRTUAL_SIZE_TAG } from '../../../src/spm/validate.js';
import { GiB, MiB } from '../../../src/util/sizes.js';
import type { ClusterWorld } from './cluster-world.js';
import { labBootImage } from './lab-world.js';
import type { LibvirtHost } from './libvirt-host.js';
import { until } from './watch.js';

export type GuestResult = GuestLine & { kind: 'result' };

/**
 * The lab guest as a libvirt domain on one LibvirtHost: a fresh 128 MiB thin
 * volume holding a 4 GiB qcow2 image, seen through that host's own view, the
 * guest writing `writeMib` throttled and then reading everything back. Its
 * console file outlives a migration: the guest reports there from any host.
 */
export class LibvirtGuest {
  private constructor(
    readonly domain: string,
    readonly consoleLog: string,
    private readonly writeMib: number,
  ) {}

  /**
   * `writeBytesPerSecond`: the guest's disk throttled to it; `virtualBytes`, `guestParameters` and `machine` as in
   * src/lab/libvirt-domain.ts (an image smaller than 4 GiB to grow live, a second disk to wait for, a guest that stays up).
   */
  static async create(cluster: ClusterWorld, host: LibvirtHost, options: { domain: string; volume: string; writeMib: number; writeBytesPerSecond?: number; virtualBytes?: number; guestParameters?: string; machine?: 'q35' | 'pc' }): Promise<LibvirtGuest> {
    const { domain, volume, writeMib } = options;
    // Recorded as `tideline volume create` records it: a child can be made over it, and the SPM's cap follows the image.
    await cluster.lab.plugin.create(volume, 128 * MiB, { vm: domain, [VIRTUAL_SIZE_TAG]: String(options.virtualBytes ?? 4 * GiB) });
    const hostView = await LoopPlugin.open(cluster.lab.workspace.domainDir, execaRunner, { hostView: host.name });
    const devicePath = await hostView.activate(volume);
    await execaRunner('qemu-img', ['create', '-q', '-f', 'qcow2', devicePath, String(options.virtualBytes ?? 4 * GiB)]);
    const consoleLog = path.join(cluster.dir, `${domain}.console.log`);
    const xmlFile = path.join(cluster.dir, `${domain}.xml`);
    await writeFile(xmlFile, labDomainXml({ name: domain, boot: await labBootImage(), devicePath, consoleLog, writeMib, ...(options.guestParameters ? { guestParameters: options.guestParameters } : {}), ...(options.machine ? { machine: options.machine } : {}) }));
    const created = await host.virsh('create', xmlFile);
    assert.equal(created.exitCode, 0, created.stderr);
    await host.recordQemu(domain);
    if (options.writeBytesPerSecond !== undefined) {
      const throttled = await host.virsh('blkdeviotune', domain, 'vda', '--write-bytes-sec', String(options.writeBytesPerSecond), '--live');
      assert.equal(throttled.exitCode, 0, throttled.stderr);
    }
    return new LibvirtGuest(domain, consoleLog, writeMib);
  }

  async lines(): Promise<GuestLine[]> {
    return (await readFile(this.consoleLog, 'utf8').catch(() => '')).split('\n').map(parseGuestLine).filter((line): line is GuestLine => line !== undefined);
  }

  async writtenMib(): Promise<number> {
    return Math.max(0, ...(await this.lines()).map((line) => (line.kind === 'progress' ? line.writtenMib : 0)));
  }

  async waitWritten(mib: number, timeoutMs: number): Promise<void> {
    await until(async () => (await this.writtenMib()) >= mib, timeoutMs, `the guest ${this.domain} to write ${mib} MiB`);
  }

  /**
   * The guest's final report once it wrote and read back everything: every unit there, none wrong, no error.
   * `context` adds to a timeout's message what the test knows (an agent's last lines): CI shows only that message.
   */
  async verifiedResult(timeoutMs: number, context: () => string = () => ''): Promise<GuestResult> {
    await until(async () => (await this.lines()).some((line) => line.kind === 'result'), timeoutMs, () => `the guest ${this.domain} to report its result; ${context()}`);
    const lines = await this.lines();
    const result = lines.find((line): line is GuestResult => line.kind === 'result')!;
    assert.equal(result.units, this.writeMib / 16);
    assert.equal(result.bad, 0, 'every unit read back is intact');
    assert.deepEqual(lines.filter((line) => line.kind === 'error'), []);
    return result;
  }
}
