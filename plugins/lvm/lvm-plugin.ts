import { z } from 'zod';
import type { Runner } from '../../src/util/runner.js';
import { CommandFailedError } from '../../src/errors.js';
import { alignUp } from '../../src/util/sizes.js';
import { assertVolumeName, DomainFullError, MetadataReadOnlyError, ShrinkRefusedError, StorageDomainError, VolumeExistsError, VolumeNotFoundError } from '../errors.js';
import type { StoragePlugin, VolumeInfo } from '../types.js';

/**
 * Volumes as logical volumes of one volume group on the shared LUN. Only the
 * SPM calls create/extend/remove (LVM metadata has one writer); every host may
 * list, describe, activate and refresh. Tideline's metadata lives in LV tags
 * (`key=value`), so it travels with the VG and needs no database.
 *
 * Which LVM settings each role passes, and why, is in docs/storage.md: in
 * short, LVM sees only the domain's PVs, never uses hints, skips suspended
 * devices, and on a host that is not the SPM runs in LVM's read-only mode, so
 * LVM itself refuses any change of the VG's metadata there.
 */
export type LvmRole = 'spm' | 'host';

/** lvm.conf settings by section, e.g. `{ backup: { archive: 0 } }`. */
export type LvmSettings = Record<string, Record<string, string | number>>;

export interface LvmPluginOptions {
  vg: string;
  run: Runner;
  /** 'spm' may change the VG's metadata; 'host' runs LVM read-only (activation, refresh and reports only). */
  role: LvmRole;
  /**
   * False where LVs cannot be activated (no device-mapper, as on this
   * project's build machines): metadata commands run with activation = 0, and
   * activate/refresh say that they cannot work here.
   */
  activation: boolean;
  /** The domain's PVs. Found once at open (the PVs carrying the VG) when not given. */
  devices?: readonly string[];
  /** More lvm.conf settings for every command, over the role's (tests turn metadata backups off, to leave nothing in /etc/lvm). */
  extraSettings?: LvmSettings;
}

/**
 * LVM 2.03 ignores `global/metadata_read_only` for lvextend, lvcreate and tag
 * changes (tried on 2.03.16); `locking_type = 4` is what it still enforces,
 * mapped to `--sysinit --readonly`: reports and activation work, every
 * metadata change is refused. It also refuses `lvchange --refresh` (the same
 * as oVirt's BZ 2025527), which reads metadata and only reloads this host's
 * device-mapper table, so refresh alone runs with LVM's ordinary local locking.
 */
const READ_ONLY: LvmSettings = { global: { locking_type: 4 } };
const ROLE_SETTINGS: Record<LvmRole, LvmSettings> = {
  // A metadata archive per change, bounded: an extension every few GiB written would otherwise fill /etc/lvm/archive.
  spm: { backup: { retain_min: 50, retain_days: 0 } },
  host: {},
};
/** Hints are a cache of which devices hold PVs; another host's pvcreate makes them stale. Suspended devices (an LV mid-refresh) can hang a scan. */
const DOMAIN_DEVICES: LvmSettings = { devices: { hints: '"none"', ignore_suspended_devices: 1, use_devicesfile: 0 } };
const NO_ACTIVATION: LvmSettings = { global: { activation: 0 } };
/** oVirt's extent size for block storage domains: fewer, larger extents keep the VG's metadata small. */
export const DEFAULT_EXTENT_BYTES = 128 * 1024 * 1024;

const LVM_TIMEOUT_MS = 60_000;
/** LVM exits 5 for "not found" and for most refusals; the message tells which. */
const LVM_FAILED = 5;
const TAG_KEY = /^[A-Za-z0-9_+.-]+$/;
const TAG_VALUE = /^[A-Za-z0-9_+.\-/:#&!]*$/;

const lvsReport = z.object({ report: z.array(z.object({ lv: z.array(z.object({ lv_name: z.string(), lv_size: z.string(), lv_tags: z.string() })) })) });
const pvsReport = z.object({ report: z.array(z.object({ pv: z.array(z.object({ pv_name: z.string(), vg_name: z.string() })) })) });
const vgsReport = z.object({ report: z.array(z.object({ vg: z.array(z.object({ vg_name: z.string(), vg_extent_size: z.string(), vg_free: z.string() })) })) });

export class LvmPlugin implements StoragePlugin {
  readonly kind = 'lvm';
  /** Each volume's tags as this plugin last read them (extend returns them without another lvs). */
  private readonly tagsRead = new Map<string, Record<string, string>>();

  private constructor(
    private readonly options: LvmPluginOptions,
    readonly extentBytes: number,
  ) {}

  get domain(): string {
    return this.options.vg;
  }

  static async open(options: LvmPluginOptions): Promise<LvmPlugin> {
    const devices = options.devices ?? (await new LvmPlugin({ ...options, devices: [] }, 0).findDomainDevices());
    const probe = new LvmPlugin({ ...options, devices }, 0);
    const vg = await probe.readVg();
    return new LvmPlugin({ ...options, devices }, Number(vg.vg_extent_size));
  }

  /**
   * Makes a new storage domain: PVs on the given devices and the VG on them,
   * never auto-activated at boot (activation is tideline's, per volume, on the
   * host that runs the VM). Run once, on the SPM.
   */
  static async createDomain(options: { vg: string; devices: readonly string[]; run: Runner; extentBytes?: number; activation?: boolean }): Promise<void> {
    if (options.devices.length === 0) throw new StorageDomainError(`name at least one device for volume group ${options.vg}`);
    const plugin = new LvmPlugin({ vg: options.vg, run: options.run, role: 'spm', activation: options.activation ?? true, devices: options.devices }, 0);
    const pvcreate = await plugin.lvm('pvcreate', [...options.devices], [LVM_FAILED]);
    if (pvcreate.exitCode !== 0) {
      const taken = /physical volume "?([^"\s]+)"? of volume group "?([^"\s]+?)"? without/i.exec(pvcreate.stderr);
      if (taken) throw new StorageDomainError(`${taken[1]} already belongs to volume group ${taken[2]}; nothing was changed. Use that VG as it is, or remove it first (vgremove) if it is truly unused`);
      throw plugin.failure('pvcreate', pvcreate.stderr);
    }
    const vgcreate = await plugin.lvm('vgcreate', ['--setautoactivation', 'n', '--physicalextentsize', `${options.extentBytes ?? DEFAULT_EXTENT_BYTES}b`, options.vg, ...options.devices], [LVM_FAILED]);
    if (vgcreate.exitCode !== 0) {
      if (/already exists/i.test(vgcreate.stderr)) throw new StorageDomainError(`volume group ${options.vg} already exists; pick another name or use it as it is`);
      throw plugin.failure('vgcreate', vgcreate.stderr);
    }
  }

  async create(volume: string, sizeBytes: number, tags: Record<string, string> = {}): Promise<VolumeInfo> {
    assertVolumeName(volume);
    const size = alignUp(Math.max(sizeBytes, 1), this.extentBytes);
    const tagArgs = Object.entries(tags).flatMap(([key, value]) => ['--addtag', encodeTag(key, value)]);
    const result = await this.lvm('lvcreate', ['--name', volume, '--size', `${size}b`, '--activate', 'n', '--zero', 'n', '--wipesignatures', 'n', ...tagArgs, this.options.vg], [LVM_FAILED]);
    if (result.exitCode !== 0) {
      this.refusedReadOnly('lvcreate', volume, result.stderr);
      if (/already exists/i.test(result.stderr)) throw new VolumeExistsError(volume, this.domain);
      if (/insufficient free space/i.test(result.stderr)) throw new DomainFullError(volume, this.domain, size, await this.freeBytes());
      throw this.failure('lvcreate', result.stderr);
    }
    return { name: volume, sizeBytes: size, tags };
  }

  async remove(volume: string): Promise<void> {
    assertVolumeName(volume);
    const result = await this.lvm('lvremove', ['--force', `${this.options.vg}/${volume}`], [LVM_FAILED]);
    this.tagsRead.delete(volume);
    if (result.exitCode !== 0) {
      this.refusedReadOnly('lvremove', volume, result.stderr);
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
    this.tagsRead.set(volume, info.tags);
    return info;
  }

  /**
   * lvextend first, without reading the LV before: every LVM command costs a
   * process start and a scan, and lvextend itself never shrinks. Its refusals
   * say whether the LV already had that size or more. Nor is it read after:
   * lvextend succeeds only in growing the LV to exactly the extent-aligned
   * target, and its tags are as this plugin last read them (the SPM reads
   * every volume just before it extends it, and only the SPM changes tags).
   * Each `lvs` took 0.5-2 s in the TCG storage hosts of figure 8.
   */
  async extend(volume: string, targetBytes: number): Promise<VolumeInfo> {
    assertVolumeName(volume);
    const target = alignUp(targetBytes, this.extentBytes);
    const result = await this.lvm('lvextend', ['--size', `${target}b`, `${this.options.vg}/${volume}`], [LVM_FAILED]);
    if (result.exitCode === 0) {
      const tags = this.tagsRead.get(volume);
      return tags ? { name: volume, sizeBytes: target, tags } : this.describe(volume);
    }
    this.refusedReadOnly('lvextend', volume, result.stderr);
    if (/failed to find|not found in volume group/i.test(result.stderr)) throw new VolumeNotFoundError(volume, this.domain);
    if (/insufficient free space/i.test(result.stderr)) {
      const current = await this.describe(volume);
      throw new DomainFullError(volume, this.domain, target - current.sizeBytes, await this.freeBytes());
    }
    if (/matches existing size|not larger than existing|cannot reduce|new size .* smaller/i.test(result.stderr)) {
      const current = await this.describe(volume);
      if (targetBytes < current.sizeBytes) throw new ShrinkRefusedError(volume, current.sizeBytes, targetBytes);
      return current;
    }
    throw this.failure('lvextend', result.stderr);
  }

  async setTag(volume: string, key: string, value: string | undefined): Promise<VolumeInfo> {
    const current = await this.describe(volume);
    const old = current.tags[key];
    if (old === value) return current;
    // One lvchange: both tag changes land in one metadata commit.
    const args = [...(old === undefined ? [] : ['--deltag', encodeTag(key, old)]), ...(value === undefined ? [] : ['--addtag', encodeTag(key, value)]), `${this.options.vg}/${volume}`];
    const result = await this.lvm('lvchange', args, [LVM_FAILED]);
    if (result.exitCode === 0) return this.describe(volume);
    this.refusedReadOnly('lvchange', volume, result.stderr);
    throw this.failure('lvchange', result.stderr);
  }

  async reduce(volume: string, targetBytes: number): Promise<VolumeInfo> {
    assertVolumeName(volume);
    const target = alignUp(targetBytes, this.extentBytes);
    const current = await this.describe(volume);
    if (target > current.sizeBytes) throw new StorageDomainError(`cannot reduce ${this.options.vg}/${volume} to ${target} bytes: it is only ${current.sizeBytes} bytes`);
    if (target === current.sizeBytes) return current;
    // --force: lvreduce asks before it shrinks; the caller checked that the image ends below the new size.
    const result = await this.lvm('lvreduce', ['--force', '--size', `${target}b`, `${this.options.vg}/${volume}`], [LVM_FAILED]);
    if (result.exitCode === 0) return this.describe(volume);
    this.refusedReadOnly('lvreduce', volume, result.stderr);
    throw this.failure('lvreduce', result.stderr);
  }

  async refresh(volume: string): Promise<number> {
    // Nothing is active here, so there is no mapping to reload: the metadata says what the size is.
    if (!this.options.activation) return (await this.describe(volume)).sizeBytes;
    assertVolumeName(volume);
    const result = await this.lvm('lvchange', ['--refresh', `${this.options.vg}/${volume}`], [LVM_FAILED], { readOnly: false });
    if (result.exitCode !== 0) {
      if (/failed to find/i.test(result.stderr)) throw new VolumeNotFoundError(volume, this.domain);
      throw this.failure('lvchange', result.stderr);
    }
    // What this host now sees is the mapping's size: one ioctl (blockdev), where an lvs scans every device again.
    // An LV not active here has no mapping: then the metadata's size.
    return (await this.visibleBytes(volume)) ?? (await this.describe(volume)).sizeBytes;
  }

  async visibleBytes(volume: string): Promise<number | undefined> {
    assertVolumeName(volume);
    if (!this.options.activation) return undefined;
    // The device-mapper table's size, which only a refresh changes; no LV, no device node.
    const result = await this.options.run('blockdev', ['--getsize64', this.devicePath(volume)], { timeoutMs: LVM_TIMEOUT_MS, acceptExitCodes: [1] });
    return result.exitCode === 0 ? Number(result.stdout.trim()) : undefined;
  }

  backingPath(volume: string): string {
    assertVolumeName(volume);
    return this.devicePath(volume);
  }

  private devicePath(volume: string): string {
    return `/dev/${this.options.vg}/${volume}`;
  }

  async activate(volume: string): Promise<string> {
    assertVolumeName(volume);
    this.requireActivation('activate', volume);
    await this.changeActivation(volume, 'y');
    return this.devicePath(volume);
  }

  async deactivate(volume: string): Promise<void> {
    assertVolumeName(volume);
    this.requireActivation('deactivate', volume);
    await this.changeActivation(volume, 'n');
  }

  private async changeActivation(volume: string, activate: 'y' | 'n'): Promise<void> {
    const result = await this.lvm('lvchange', ['--activate', activate, `${this.options.vg}/${volume}`], [LVM_FAILED]);
    if (result.exitCode === 0) return;
    if (/failed to find/i.test(result.stderr)) throw new VolumeNotFoundError(volume, this.domain);
    if (/in use/i.test(result.stderr)) throw new StorageDomainError(`cannot deactivate ${this.options.vg}/${volume}: it is open on this host (a VM or another program uses it); stop that user first`);
    throw this.failure('lvchange', result.stderr);
  }

  async isActive(volume: string): Promise<boolean> {
    assertVolumeName(volume);
    if (!this.options.activation) return false;
    const result = await this.lvm('lvs', [...reportArgs('lv_active'), `${this.options.vg}/${volume}`], [LVM_FAILED]);
    if (result.exitCode !== 0) throw new VolumeNotFoundError(volume, this.domain);
    return /"lv_active":"active"/.test(result.stdout);
  }

  async activePath(volume: string): Promise<string | undefined> {
    return (await this.isActive(volume)) ? this.devicePath(volume) : undefined;
  }

  async activeVolumes(): Promise<string[]> {
    if (!this.options.activation) return [];
    const result = await this.lvm('lvs', [...reportArgs('lv_name,lv_active'), this.options.vg]);
    const parsed = JSON.parse(result.stdout) as { report?: Array<{ lv?: Array<{ lv_name?: string; lv_active?: string }> }> };
    return (parsed.report ?? []).flatMap((report) => report.lv ?? []).filter((lv) => lv.lv_active === 'active' && lv.lv_name).map((lv) => lv.lv_name!);
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

  /** `readOnly: false`: the one command a host runs with ordinary locking (refresh; see READ_ONLY). */
  private lvm(command: string, args: string[], acceptExitCodes: number[] = [], options: { readOnly?: boolean } = {}) {
    const readOnly = this.options.role === 'host' && options.readOnly !== false ? READ_ONLY : {};
    const settings = mergeSettings(DOMAIN_DEVICES, ROLE_SETTINGS[this.options.role], readOnly, this.options.activation ? {} : NO_ACTIVATION, this.options.extraSettings ?? {});
    const devices = (this.options.devices ?? []).flatMap((device) => ['--devices', device]);
    return this.options.run(command, ['--config', renderSettings(settings), ...devices, ...args], {
      timeoutMs: LVM_TIMEOUT_MS,
      acceptExitCodes,
      env: { LVM_SUPPRESS_FD_WARNINGS: '1' },
    });
  }

  /** The PVs that carry the VG, found by one scan of this host's devices (a plugin opened with no devices). */
  private async findDomainDevices(): Promise<string[]> {
    const result = await this.lvm('pvs', reportArgs('pv_name,vg_name'));
    const parsed = pvsReport.safeParse(JSON.parse(result.stdout));
    const devices = parsed.success ? parsed.data.report.flatMap((report) => report.pv).filter((pv) => pv.vg_name === this.options.vg).map((pv) => pv.pv_name) : [];
    if (devices.length === 0) throw new StorageDomainError(`no device of this host carries volume group ${this.options.vg}; check that the LUN is connected ('pvs' lists it) or name its devices in the configuration`);
    return devices;
  }

  private refusedReadOnly(command: string, volume: string, stderr: string): void {
    if (/prohibited while --readonly/i.test(stderr)) throw new MetadataReadOnlyError(command, `${this.options.vg}/${volume}`);
  }

  private failure(command: string, stderr: string): CommandFailedError {
    return new CommandFailedError(command, [this.options.vg], lastLine(stderr));
  }
}

export function mergeSettings(...layers: LvmSettings[]): LvmSettings {
  const merged: LvmSettings = {};
  for (const layer of layers) for (const [section, values] of Object.entries(layer)) merged[section] = { ...merged[section], ...values };
  return merged;
}

/** One `--config` string: `section { key = value ... } ...`, each section once (LVM would not merge a repeated one). */
export function renderSettings(settings: LvmSettings): string {
  return Object.entries(settings)
    .filter(([, values]) => Object.keys(values).length > 0)
    .map(([section, values]) => `${section} { ${Object.entries(values).map(([key, value]) => `${key} = ${value}`).join(' ')} }`)
    .join(' ');
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
  return text.trim().split('\n').filter((line) => !/WARNING: (Activation disabled|locking_type \(4\) is deprecated)/.test(line)).pop()?.trim() ?? 'no output';
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
