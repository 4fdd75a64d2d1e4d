import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { labDomainXml } from '../../../src/lab/libvirt-domain.js';
import { parseGuestLine, type GuestLine } from '../../../src/lab/guest-report.js';
import { isAlive } from '../../../src/util/process-alive.js';
import { execaRunner } from '../../../src/util/runner.js';
import { GiB, MiB } from '../../../src/util/sizes.js';
import type { LabWorld } from './lab-world.js';
import { labBootImage } from './lab-world.js';
import { until } from './watch.js';

/**
 * libvirtd for the tests: the running one, or one started here without systemd
 * (virtlogd -d; libvirtd -d) and stopped afterwards by the PIDs it wrote.
 */
const URI = 'qemu:///system';
const DOMAIN_PREFIX = 'tltest';

export const virsh = (...args: string[]) => execa('virsh', ['-c', URI, ...args], { reject: false, timeout: 30_000 });

export async function ensureLibvirtd(): Promise<{ ours: boolean; stop(): Promise<void> }> {
  if ((await virsh('version')).exitCode === 0) return { ours: false, stop: async () => undefined };
  const startVirtlogd = (await execa('pgrep', ['-x', 'virtlogd'], { reject: false })).exitCode !== 0;
  if (startVirtlogd) await execaRunner('virtlogd', ['-d']);
  await execaRunner('libvirtd', ['-d']);
  await until(async () => (await virsh('version')).exitCode === 0, 30_000, 'libvirtd to answer');
  return {
    ours: true,
    stop: async () => {
      for (const pidFile of ['/run/libvirtd.pid', ...(startVirtlogd ? ['/run/virtlogd.pid'] : [])]) {
        const pid = Number(await readFile(pidFile, 'utf8').catch(() => ''));
        if (pid && isAlive(pid)) process.kill(pid, 'SIGTERM');
      }
    },
  };
}

/** Stops the libvirtd this suite started (by the PID it wrote) and starts it again; running domains survive. */
export async function restartLibvirtd(): Promise<void> {
  const pid = Number(await readFile('/run/libvirtd.pid', 'utf8'));
  process.kill(pid, 'SIGTERM');
  await until(() => !isAlive(pid), 30_000, 'libvirtd to stop');
  await execaRunner('libvirtd', ['-d']);
  await until(async () => (await virsh('version')).exitCode === 0, 30_000, 'libvirtd to answer again');
}

/**
 * Destroys transient test domains left by a run that died (their owner PID is
 * in the name). With no domain running at all, also clears the ownership
 * records libvirt keeps on the lab's shared kernel and initrd (extended
 * attributes): a libvirtd killed while a domain ran leaves them behind, and
 * libvirt then refuses every later domain using those files ("Setting
 * different DAC user or group ... which is already in use").
 */
export async function sweepTestDomains(): Promise<void> {
  const names = (await virsh('list', '--name')).stdout.split('\n').map((line) => line.trim()).filter(Boolean);
  for (const name of names) {
    const owner = Number(new RegExp(`^${DOMAIN_PREFIX}(\\d+)-`).exec(name)?.[1]);
    if (owner && owner !== process.pid && !isAlive(owner)) await virsh('destroy', name);
  }
  if ((await virsh('list', '--name')).stdout.trim() !== '') return;
  const boot = await labBootImage();
  for (const file of [boot.kernel, boot.initrd]) {
    for (const attribute of ['dac', 'ref_dac', 'timestamp_dac']) {
      await execa('setfattr', ['-x', `trusted.libvirt.security.${attribute}`, file], { reject: false, timeout: 10_000 });
    }
  }
}

export class LibvirtGuest {
  private constructor(
    readonly domain: string,
    readonly volume: string,
    readonly consoleLog: string,
  ) {}

  static async start(world: LabWorld, options: { name: string; writeMib: number; metadata?: string; errorPolicy?: 'stop' | 'report' }): Promise<LibvirtGuest> {
    const domain = `${DOMAIN_PREFIX}${process.pid}-${options.name}`;
    const volume = `${options.name}-vda`;
    await world.plugin.create(volume, 128 * MiB, { vm: domain });
    const device = await world.plugin.activate(volume);
    await execaRunner('qemu-img', ['create', '-q', '-f', 'qcow2', device, String(4 * GiB)]);
    const consoleLog = path.join(world.dir, `${options.name}.console.log`);
    const xmlFile = path.join(world.dir, `${options.name}.xml`);
    const { writeFile } = await import('node:fs/promises');
    await writeFile(xmlFile, labDomainXml({ name: domain, boot: await labBootImage(), devicePath: device, consoleLog, writeMib: options.writeMib, ...(options.metadata ? { metadata: options.metadata } : {}), ...(options.errorPolicy ? { errorPolicy: options.errorPolicy } : {}) }));
    const created = await virsh('create', xmlFile);
    if (created.exitCode !== 0) throw new Error(`virsh create failed: ${created.stderr}`);
    return new LibvirtGuest(domain, volume, consoleLog);
  }

  async lines(): Promise<GuestLine[]> {
    const text = await readFile(this.consoleLog, 'utf8').catch(() => '');
    return text.split('\n').map(parseGuestLine).filter((line): line is GuestLine => line !== undefined);
  }

  /** Waits for the guest's verdict: units and bad units. */
  async result(timeoutMs: number): Promise<Extract<GuestLine, { kind: 'result' }>> {
    let result: Extract<GuestLine, { kind: 'result' }> | undefined;
    await until(async () => {
      result = (await this.lines()).find((line): line is Extract<GuestLine, { kind: 'result' }> => line.kind === 'result');
      return result !== undefined;
    }, timeoutMs, `${this.domain} to report its result (console ${this.consoleLog})`);
    return result!;
  }

  async state(): Promise<string> {
    return (await virsh('domstate', '--reason', this.domain)).stdout.trim();
  }

  async destroy(): Promise<void> {
    await virsh('destroy', this.domain);
  }
}
