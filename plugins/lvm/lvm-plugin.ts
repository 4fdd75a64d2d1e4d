import { z } from 'zod';
import type { Runner } from '../../src/util/runner.js';
import { CommandFailedError } from '../../src/errors.js';
import { alignUp } from '../../src/util/sizes.js';
import { assertVolumeName, DomainFullError, ShrinkRefusedError, StorageDomainError, VolumeExistsError, VolumeNotFoundError } from '../errors.js';
import type { StoragePlugin, VolumeInfo } from '../types.js';

/**
 * Volumes as logical volumes of one volume group on the shared LUN. Only the
 * SPM calls create/extend/remove (LVM metadata has one writer); every host may
 * list, describe and refresh. Tideline's metadata lives in LV tags
 * (`key=value`), so it travels with the VG and needs no database.
 */
export interface LvmPluginOptions {
  vg: string;
  run: Runner;
  /**
   * False where LVs cannot be activated (no device-mapper, as on this
   * project's build machines): metadata commands run with activation = 0, and
   * activate/refresh say that they cannot work here.
   */
  activation: boolean;
  /** Restricts LVM to these devices (tests: only the loop device of the test VG). */
  devices?: readonly string[];
  /** More lvm.conf settings for every command (tests turn metadata backups off, to leave nothing in /etc/lvm). */
  extraConfig?: string;
}

const LVM_TIMEOUT_MS = 60_000;
/** LVM exits 5 for "not found" and for most refusals; the message tells which. */
const LVM_FAILED = 5;
const TAG_KEY = /^[A-Za-z0-9_+.-]+$/;
const TAG_VALUE = /^[A-Za-z0-9_+.\-/:#&!]*$/;

const lvsReport = z.object({ report: z.array(z.object({ lv: z.array(z.object({ lv_name: z.string(), lv_size: z.string(), lv_tags: z.string() })) })) });
const vgsReport = z.object({ report: z.array(z.object({ vg: z.array(z.object({ vg_name: z.string(), vg_extent_size: z.string(), vg_free: z.string() })) })) });

export class LvmPlugin implements StoragePlugin {
  readonly kind = 'lvm';

  private constructor(
    private readonly options: LvmPluginOptions,
    readonly extentBytes: number,
  ) {}

  get domain(): string {
    return this.options.vg;
  }

  static async open(options: LvmPluginOptions): Promise<LvmPlugin> {
    const probe = new LvmPlugin(options, 0);
    const vg = await probe.readVg();
    return new LvmPlugin(options, Number(vg.vg_extent_size));
  }

  async create(volume: string, sizeBytes: number, tags: Record<string, string> = {}): Promise<VolumeInfo> {
    assertVolumeName(volume);
    const size = alignUp(Math.max(sizeBytes, 1), this.extentBytes);
    const tagArgs = Object.entries(tags).flatMap(([key, value]) => ['--addtag', encodeTag(key, value)]);
    const result = await this.lvm('lvcreate', ['--name', volume, '--size', `${size}b`, '--activate', 'n', '--zero', 'n', '--wipesignatures', 'n', ...tagArgs, this.options.vg], [LVM_FAILED]);
    if (result.exitCode !== 0) {
      if (/already exists/i.test(result.stderr)) throw new VolumeExistsError(volume, this.domain);
      if (/insufficient free space/i.test(result.stderr)) throw new DomainFullError(volume, this.domain, size, await this.freeBytes());
      throw this.failure('lvcreate', result.stderr);
    }
    return { name: volume, sizeBytes: size, tags };
  }

  async remove(volume: string): Promise<void> {
    assertVolumeName(volume);
    const result = await this.lvm('lvremove', ['--force', `${this.options.vg}/${volume}`], [LVM_FAILED]);
    if (result.exitCode !== 0) {
      if (/failed to find/i.test(result.stderr)) throw new VolumeNotFoundError(volume, this.domain);
      throw this.failure('lvremove', result.stderr);
    }
  }

  async list(): Promise<VolumeInfo[]> {
    return this.readLvs([this.options.vg]);
  }

  async describe(volume: string): Promise<VolumeInfo> {
    assertVolumeName(volume);
    const result = await this.lvm('lvs', [...reportArgs('lv_name,lv_size,lv_tags'), `${this.options.vg}/${volume}`], [LVM_FAILED]);
    if (result.exitCode !== 0) {
      if (/failed to find/i.test(result.stderr)) throw new VolumeNotFoundError(volume, this.domain);
      throw this.failure('lvs', result.stderr);
    }
    const [info] = parseLvs(result.stdout);
    if (!info) throw new VolumeNotFoundError(volume, this.domain);
    return info;
  }

  async extend(volume: string, targetBytes: number): Promise<VolumeInfo> {
    const current = await this.describe(volume);
    if (targetBytes < current.sizeBytes) throw new ShrinkRefusedError(volume, current.sizeBytes, targetBytes);
    const target = alignUp(targetBytes, this.extentBytes);
    if (target <= current.sizeBytes) return current;
    const result = await this.lvm('lvextend', ['--size', `${target}b`, `${this.options.vg}/${volume}`], [LVM_FAILED]);
    if (result.exitCode !== 0) {
      if (/insufficient free space/i.test(result.stderr)) throw new DomainFullError(volume, this.domain, target - current.sizeBytes, await this.freeBytes());
      if (/failed to find/i.test(result.stderr)) throw new VolumeNotFoundError(volume, this.domain);
      if (/cannot reduce|new size .* smaller/i.test(result.stderr)) throw new ShrinkRefusedError(volume, current.sizeBytes, target);
      throw this.failure('lvextend', result.stderr);
    }
    return this.describe(volume);
  }

  async refresh(volume: string): Promise<number> {
    const info = await this.describe(volume);
    if (!this.options.activation) return info.sizeBytes; // nothing is active here, so there is no mapping to reload
    await this.lvm('lvchange', ['--refresh', `${this.options.vg}/${volume}`]);
    return info.sizeBytes;
  }

  async activate(volume: string): Promise<string> {
    assertVolumeName(volume);
    this.requireActivation('activate', volume);
    await this.lvm('lvchange', ['--activate', 'y', `${this.options.vg}/${volume}`]);
    return `/dev/${this.options.vg}/${volume}`;
  }

  async deactivate(volume: string): Promise<void> {
    assertVolumeName(volume);
    this.requireActivation('deactivate', volume);
    await this.lvm('lvchange', ['--activate', 'n', `${this.options.vg}/${volume}`]);
  }

  async isActive(volume: string): Promise<boolean> {
    assertVolumeName(volume);
    if (!this.options.activation) return false;
    const result = await this.lvm('lvs', [...reportArgs('lv_active'), `${this.options.vg}/${volume}`], [LVM_FAILED]);
    if (result.exitCode !== 0) throw new VolumeNotFoundError(volume, this.domain);
    return /"lv_active":"active"/.test(result.stdout);
  }

  async volumeForPath(devicePath: string): Promise<string | undefined> {
    const vg = this.options.vg;
    const direct = new RegExp(`^/dev/${escape(vg)}/([^/]+)$`).exec(devicePath)?.[1];
    // device-mapper doubles hyphens inside VG and LV names: /dev/mapper/my--vg-my--lv
    const mapped = new RegExp(`^/dev/mapper/${escape(vg.replace(/-/g, '--'))}-((?:[^-]|--)+)$`).exec(devicePath)?.[1]?.replace(/--/g, '-');
    return direct ?? mapped;
  }

  async freeBytes(): Promise<number> {
    return Number((await this.readVg()).vg_free);
  }

  private requireActivation(what: string, volume: string): void {
    if (!this.options.activation) {
      throw new StorageDomainError(`cannot ${what} ${this.options.vg}/${volume}: LV activation is disabled on this host (no device-mapper); run tideline on a hypervisor with device-mapper`);
    }
  }

  private async readVg(): Promise<{ vg_name: string; vg_extent_size: string; vg_free: string }> {
    const result = await this.lvm('vgs', [...reportArgs('vg_name,vg_extent_size,vg_free'), this.options.vg], [LVM_FAILED]);
    if (result.exitCode !== 0) throw new StorageDomainError(`volume group ${this.options.vg} is not visible on this host: ${lastLine(result.stderr)}; check that the LUN is connected and 'vgs ${this.options.vg}' works`);
    const parsed = vgsReport.safeParse(JSON.parse(result.stdout));
    const vg = parsed.success ? parsed.data.report[0]?.vg[0] : undefined;
    if (!vg) throw new StorageDomainError(`vgs gave no report for ${this.options.vg}`);
    return vg;
  }

  private async readLvs(args: string[]): Promise<VolumeInfo[]> {
    const result = await this.lvm('lvs', [...reportArgs('lv_name,lv_size,lv_tags'), ...args]);
    return parseLvs(result.stdout);
  }

  private lvm(command: string, args: string[], acceptExitCodes: number[] = []) {
    const config = [this.options.activation ? '' : 'global { activation = 0 }', this.options.devices ? 'devices { use_devicesfile = 0 }' : '', this.options.extraConfig ?? ''].filter(Boolean).join(' ');
    const devices = (this.options.devices ?? []).flatMap((device) => ['--devices', device]);
    return this.options.run(command, [...(config ? ['--config', config] : []), ...devices, ...args], {
      timeoutMs: LVM_TIMEOUT_MS,
      acceptExitCodes,
      env: { LVM_SUPPRESS_FD_WARNINGS: '1' },
    });
  }

  private failure(command: string, stderr: string): CommandFailedError {
    return new CommandFailedError(command, [this.options.vg], lastLine(stderr));
  }
}

function reportArgs(fields: string): string[] {
  return ['--reportformat', 'json', '--units', 'b', '--nosuffix', '-o', fields];
}

function parseLvs(stdout: string): VolumeInfo[] {
  const parsed = lvsReport.parse(JSON.parse(stdout));
  return parsed.report.flatMap((report) => report.lv).map((lv) => ({ name: lv.lv_name, sizeBytes: Number(lv.lv_size), tags: decodeTags(lv.lv_tags) }));
}

export function encodeTag(key: string, value: string): string {
  if (!TAG_KEY.test(key) || !TAG_VALUE.test(value) || key.length + value.length + 1 > 1024) {
    throw new StorageDomainError(`tag ${key}=${value} cannot be stored as an LVM tag (letters, digits and _+.-/:#&! only)`);
  }
  return `${key}=${value}`;
}

export function decodeTags(text: string): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const tag of text.split(',').filter(Boolean)) {
    const separator = tag.indexOf('=');
    if (separator > 0) tags[tag.slice(0, separator)] = tag.slice(separator + 1);
  }
  return tags;
}

function lastLine(text: string): string {
  return text.trim().split('\n').filter((line) => !/WARNING: Activation disabled/.test(line)).pop()?.trim() ?? 'no output';
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
