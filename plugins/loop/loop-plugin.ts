import { constants } from 'node:fs';
import { access, mkdir, open, readdir, readFile, rename, rm, stat, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import type { Runner } from '../../src/util/runner.js';
import { MiB, alignUp } from '../../src/util/sizes.js';
import { assertVolumeName, DomainFullError, ShrinkRefusedError, StorageDomainError, VolumeExistsError, VolumeNotFoundError } from '../errors.js';
import type { StoragePlugin, VolumeInfo } from '../types.js';
import { detachLoop, loopDevicesFor, loopDeviceSize, refreshLoop, listLoopDevices } from './loop-devices.js';
import { HOSTS_DIR, hostView, isHostViewName, sharedView, volumeInHostView, type DeviceView } from './device-views.js';

/**
 * The lab's stand-in for a shared VG: a directory whose sparse files are the
 * LVs, attached as loop devices. Like a VG it has a fixed capacity, so "VG
 * full" happens here as it would on a LUN, and sizes are counted as allocated
 * extents whether or not the guest wrote them.
 */
const DOMAIN_FILE = 'domain.json';
const VOLUME_SUFFIX = '.img';
const TAGS_SUFFIX = '.tags.json';
/** A directory time younger than this may not show a change made within the same tick (see directoryVersion). */
const RECENT_CHANGE_MS = 50;

const domainSchema = z.object({
  format: z.literal(1),
  capacityBytes: z.number().int().positive(),
  extentBytes: z.number().int().positive(),
});
export type LoopDomainSettings = z.infer<typeof domainSchema>;

export const DEFAULT_LOOP_EXTENT_BYTES = MiB;

export async function initLoopDomain(directory: string, capacityBytes: number, extentBytes = DEFAULT_LOOP_EXTENT_BYTES): Promise<void> {
  await mkdir(directory, { recursive: true });
  const settings: LoopDomainSettings = { format: 1, capacityBytes, extentBytes };
  const file = path.join(directory, DOMAIN_FILE);
  try {
    // 'wx': never overwrite an existing domain's description, whose volumes would then be misread.
    await writeFile(file, `${JSON.stringify(settings, null, 2)}\n`, { flag: 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') throw new StorageDomainError(`${directory} already holds a loop storage domain (${file}); use it as it is or choose another directory`, { cause: error });
    throw error;
  }
}

/**
 * Adds capacity to a domain, as `pvresize` after growing the LUN adds free
 * extents to a VG: the SPM sees it at its next allocation, no restart.
 * Never shrinks (the volumes would no longer fit).
 */
export async function growLoopDomain(directory: string, capacityBytes: number): Promise<LoopDomainSettings> {
  const file = path.join(directory, DOMAIN_FILE);
  const current = await readDomainFile(directory);
  if (capacityBytes < current.capacityBytes) throw new StorageDomainError(`${directory} holds ${current.capacityBytes} bytes; a loop domain only grows (asked for ${capacityBytes})`);
  const grown: LoopDomainSettings = { ...current, capacityBytes };
  // Written whole and renamed over the old one: an SPM reading it meanwhile sees one or the other.
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, `${JSON.stringify(grown, null, 2)}\n`);
  await rename(temporary, file);
  return grown;
}

async function readDomainFile(directory: string): Promise<LoopDomainSettings> {
  const file = path.join(directory, DOMAIN_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new StorageDomainError(`${directory} is not a loop storage domain (no ${DOMAIN_FILE}); create one with 'tideline loop-domain init ${directory} --capacity SIZE'`, { cause: error });
  }
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw new StorageDomainError(`${file} is not valid JSON; restore it or create the domain again`, { cause: error });
  }
  const parsed = domainSchema.safeParse(document);
  if (!parsed.success) throw new StorageDomainError(`${file} is not a valid loop domain description: ${parsed.error.message}`);
  return parsed.data;
}

interface WaitingExtension {
  volume: string;
  file: string;
  targetBytes: number;
  resolve(sizeBytes: number): void;
  reject(error: Error): void;
}

export class LoopPlugin implements StoragePlugin {
  readonly kind = 'loop';
  readonly domain: string;

  private metadataQueue: Promise<unknown> = Promise.resolve();
  private sizes = new Map<string, number>();
  private capacityBytes: number | undefined;
  private allocationAsOf = Number.NaN;
  private readonly tags = new Map<string, Record<string, string>>();
  private tagsAsOf = Number.NaN;
  private readonly waitingExtensions: WaitingExtension[] = [];

  private constructor(
    private readonly directory: string,
    private readonly settings: LoopDomainSettings,
    private readonly run: Runner,
    private readonly view: DeviceView,
  ) {
    this.domain = directory;
  }

  /**
   * `options.hostView`: this plugin is one host of several on this machine and
   * sees volumes only through its own loop devices (plugins/loop/device-views.ts).
   */
  static async open(directory: string, run: Runner, options: { hostView?: string } = {}): Promise<LoopPlugin> {
    if (options.hostView !== undefined && !isHostViewName(options.hostView)) throw new StorageDomainError(`host view name "${options.hostView}" must be 1-64 letters, digits, _ . or -`);
    const settings = await readDomainFile(directory);
    const view = options.hostView === undefined ? sharedView(run) : hostView(run, directory, options.hostView);
    return new LoopPlugin(directory, settings, run, view);
  }

  get extentBytes(): number {
    return this.settings.extentBytes;
  }

  async create(volume: string, sizeBytes: number, tags: Record<string, string> = {}): Promise<VolumeInfo> {
    return this.exclusive(async () => {
      assertVolumeName(volume);
      const size = alignUp(sizeBytes, this.extentBytes);
      const file = this.fileOf(volume);
      if (await exists(file)) throw new VolumeExistsError(volume, this.domain);
      await this.assertRoom(volume, size);
      const handle = await open(file, 'wx');
      await handle.close();
      await truncate(file, size);
      await writeFile(this.tagsFileOf(volume), JSON.stringify(tags));
      return { name: volume, sizeBytes: size, tags };
    });
  }

  async remove(volume: string): Promise<void> {
    return this.exclusive(async () => {
      const file = await this.existingFile(volume);
      for (const device of await loopDevicesFor(file)) await detachLoop(this.run, device);
      await rm(file);
      await rm(this.tagsFileOf(volume), { force: true });
      // Every host's link to it goes too (on a VG, lvremove ends the LV for all hosts alike).
      for (const host of await readdir(path.join(this.directory, HOSTS_DIR)).catch(() => [] as string[])) {
        await rm(path.join(this.directory, HOSTS_DIR, host, volume), { force: true });
      }
    });
  }

  async setTag(volume: string, key: string, value: string | undefined): Promise<VolumeInfo> {
    return this.exclusive(async () => {
      const info = await this.describe(volume);
      const tags = { ...info.tags };
      if (value === undefined) delete tags[key];
      else tags[key] = value;
      await writeFile(`${this.tagsFileOf(volume)}.new`, JSON.stringify(tags));
      // Renamed over the old file: a reader sees the old tags or the new ones, never half of them.
      await rename(`${this.tagsFileOf(volume)}.new`, this.tagsFileOf(volume));
      return { ...info, tags };
    });
  }

  async list(): Promise<VolumeInfo[]> {
    const names = (await readdir(this.directory)).filter((name) => name.endsWith(VOLUME_SUFFIX));
    return Promise.all(names.map((name) => this.describe(name.slice(0, -VOLUME_SUFFIX.length))));
  }

  async describe(volume: string): Promise<VolumeInfo> {
    const [sizeBytes, tags] = await Promise.all([sizeOfVolume(this.fileOf(volume), volume, this.domain), this.tagsOf(volume)]);
    return { name: volume, sizeBytes, tags };
  }

  /**
   * The SPM extends for many hosts at once (HOSTS_IN_PARALLEL in
   * src/spm/spm-service.ts), and space checks and size changes must be one at a
   * time. One at a time each cost a stat, a read of domain.json, a stat of the
   * directory and a truncate in a row: 50 hosts asking together waited about
   * 2 ms each behind one another (the round trip's p50 near 80 ms). So the
   * extensions waiting when the queue reaches them go through together: their
   * sizes read at once, one space check, their truncates at once.
   */
  async extend(volume: string, targetBytes: number): Promise<VolumeInfo> {
    const file = this.fileOf(volume);
    const sizeBytes = await new Promise<number>((resolve, reject) => {
      this.waitingExtensions.push({ volume, file, targetBytes, resolve, reject });
      if (this.waitingExtensions.length === 1) void this.exclusive(() => this.extendWaiting());
    });
    return { name: volume, sizeBytes, tags: await this.tagsOf(volume) };
  }

  /** Every extension waiting now, in the order asked; a volume asked for twice waits for the next round with its second. */
  private async extendWaiting(): Promise<void> {
    const taken = new Set<string>();
    const batch: WaitingExtension[] = [];
    const later: WaitingExtension[] = [];
    for (const waiting of this.waitingExtensions.splice(0)) {
      (taken.has(waiting.file) ? later : batch).push(waiting);
      taken.add(waiting.file);
    }
    if (later.length > 0) {
      this.waitingExtensions.push(...later);
      void this.exclusive(() => this.extendWaiting());
    }
    try {
      const sizes = await Promise.all(batch.map((waiting) => sizeOfVolume(waiting.file, waiting.volume, this.domain).catch((error: unknown) => error as Error)));
      let freeBytes: number | undefined;
      const growing: Array<{ waiting: WaitingExtension; target: number }> = [];
      for (const [index, waiting] of batch.entries()) {
        const size = sizes[index]!;
        if (size instanceof Error) {
          waiting.reject(size);
          continue;
        }
        if (waiting.targetBytes < size) {
          waiting.reject(new ShrinkRefusedError(waiting.volume, size, waiting.targetBytes));
          continue;
        }
        const target = alignUp(waiting.targetBytes, this.extentBytes);
        if (target <= size) {
          waiting.resolve(size);
          continue;
        }
        freeBytes ??= await this.freeBytes();
        if (target - size > freeBytes) {
          waiting.reject(new DomainFullError(waiting.volume, this.domain, target - size, freeBytes));
          continue;
        }
        freeBytes -= target - size;
        growing.push({ waiting, target });
      }
      await Promise.all(
        growing.map(async ({ waiting, target }) => {
          try {
            await truncate(waiting.file, target);
            this.sizes.set(path.basename(waiting.file), target);
            waiting.resolve(target);
          } catch (error) {
            waiting.reject(error as Error);
          }
        }),
      );
    } catch (error) {
      // The space check itself failed (domain.json unreadable): none of the rest was changed.
      for (const waiting of batch) waiting.reject(error as Error);
    }
  }

  /**
   * The SPM reads a volume's tags before and after every extension; each read
   * of a small file is four thread-pool round trips (open, stat, read, close).
   * Tags change only by a file created or renamed into the directory, which
   * changes the directory's time, so they are kept until it does.
   */
  private async tagsOf(volume: string): Promise<Record<string, string>> {
    const version = await this.directoryVersion();
    if (version !== this.tagsAsOf) {
      this.tags.clear();
      this.tagsAsOf = version;
    }
    const known = this.tags.get(volume);
    if (known) return { ...known };
    const tags = await readFile(this.tagsFileOf(volume), 'utf8').then((text) => JSON.parse(text) as Record<string, string>, () => ({}));
    this.tags.set(volume, tags);
    return { ...tags };
  }

  /**
   * The directory's modification time, which changes whenever a volume or a
   * tags file is created, removed or renamed; NaN (never equal to a kept
   * version) while it is so recent that another change within the same clock
   * tick would not move it (file times advance in ticks of a few milliseconds).
   */
  private async directoryVersion(): Promise<number> {
    const { mtimeMs } = await stat(this.directory);
    return Date.now() - mtimeMs < RECENT_CHANGE_MS ? Number.NaN : mtimeMs;
  }

  async reduce(volume: string, targetBytes: number): Promise<VolumeInfo> {
    return this.exclusive(async () => {
      const file = await this.existingFile(volume);
      const { size } = await stat(file);
      const target = alignUp(targetBytes, this.extentBytes);
      if (target > size) throw new StorageDomainError(`cannot reduce ${volume} to ${target} bytes: it is only ${size} bytes`);
      if (target < size) {
        await truncate(file, target);
        this.sizes.set(path.basename(file), target);
      }
      return this.describe(volume);
    });
  }

  async refresh(volume: string): Promise<number> {
    const file = await this.existingFile(volume);
    const devices = await this.view.devices(file, volume);
    if (devices.length === 0) return (await stat(file)).size;
    let seen = 0;
    for (const device of devices) {
      await refreshLoop(this.run, device);
      seen = await loopDeviceSize(device);
    }
    return seen;
  }

  async visibleBytes(volume: string): Promise<number | undefined> {
    const [device] = await this.view.devices(await this.existingFile(volume), volume);
    return device ? loopDeviceSize(device) : undefined;
  }

  async activate(volume: string): Promise<string> {
    return this.view.attach(await this.existingFile(volume), volume);
  }

  async deactivate(volume: string): Promise<void> {
    await this.view.detach(await this.existingFile(volume), volume);
  }

  async isActive(volume: string): Promise<boolean> {
    return (await this.view.devices(await this.existingFile(volume), volume)).length > 0;
  }

  async activePath(volume: string): Promise<string | undefined> {
    return this.view.activePath(await this.existingFile(volume), volume);
  }

  async activeVolumes(): Promise<string[]> {
    const names = (await readdir(this.directory)).filter((name) => name.endsWith(VOLUME_SUFFIX)).map((name) => name.slice(0, -VOLUME_SUFFIX.length));
    const attached = await listLoopDevices();
    const active = await Promise.all(names.map(async (volume) => ((await this.view.devices(this.fileOf(volume), volume, attached)).length > 0 ? volume : undefined)));
    return active.filter((volume): volume is string => volume !== undefined);
  }

  /** The volume file itself: a backing layer never grows, so no host needs a loop device's view of its size. */
  backingPath(volume: string): string {
    return this.fileOf(volume);
  }

  async volumeForPath(devicePath: string): Promise<string | undefined> {
    const viewed = this.view.volumeForViewPath(devicePath) ?? volumeInHostView(this.directory, devicePath);
    if (viewed) return viewed;
    const prefix = `${path.resolve(this.directory)}/`;
    const loop = (await listLoopDevices()).find((candidate) => candidate.device === devicePath);
    const file = loop?.backingFile ?? path.resolve(devicePath);
    if (!file.startsWith(prefix) || !file.endsWith(VOLUME_SUFFIX)) return undefined;
    return path.basename(file, VOLUME_SUFFIX);
  }

  async freeBytes(): Promise<number> {
    const { capacityBytes, sizes } = await this.allocation();
    let used = 0;
    for (const size of sizes.values()) used += size;
    return Math.max(0, capacityBytes - used);
  }

  /**
   * The domain's capacity and every volume's size. Reading domain.json and
   * stat'ing every volume on every extension made the SPM's cost grow with the
   * number of volumes, so both are kept and read again whenever the directory
   * changes: a volume created or removed by any process, the domain grown
   * (growLoopDomain renames a new domain.json into place). Extensions made
   * here update the sizes directly.
   */
  private async allocation(): Promise<{ capacityBytes: number; sizes: Map<string, number> }> {
    const version = await this.directoryVersion();
    if (version !== this.allocationAsOf || this.capacityBytes === undefined) {
      const [{ capacityBytes }, names] = await Promise.all([readDomainFile(this.directory), readdir(this.directory)]);
      const volumes = names.filter((name) => name.endsWith(VOLUME_SUFFIX));
      const sizes = await Promise.all(volumes.map(async (name) => [name, (await stat(path.join(this.directory, name)).catch(() => ({ size: 0 }))).size] as const));
      this.capacityBytes = capacityBytes;
      this.sizes = new Map(sizes);
      this.allocationAsOf = version;
    }
    return { capacityBytes: this.capacityBytes, sizes: this.sizes };
  }

  /** Space checks and size changes one at a time, so two concurrent extensions cannot both take the last free space. */
  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const result = this.metadataQueue.then(work, work);
    this.metadataQueue = result.catch(() => undefined);
    return result;
  }

  private async assertRoom(volume: string, neededBytes: number): Promise<void> {
    const free = await this.freeBytes();
    if (neededBytes > free) throw new DomainFullError(volume, this.domain, neededBytes, free);
  }

  private fileOf(volume: string): string {
    assertVolumeName(volume);
    return path.resolve(this.directory, `${volume}${VOLUME_SUFFIX}`);
  }

  private tagsFileOf(volume: string): string {
    return path.resolve(this.directory, `${volume}${TAGS_SUFFIX}`);
  }

  private async existingFile(volume: string): Promise<string> {
    const file = this.fileOf(volume);
    if (!(await exists(file))) throw new VolumeNotFoundError(volume, this.domain);
    return file;
  }
}

/** The volume's size; a missing file is the volume missing. */
async function sizeOfVolume(file: string, volume: string, domain: string): Promise<number> {
  try {
    return (await stat(file)).size;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new VolumeNotFoundError(volume, domain, { cause: error });
    throw error;
  }
}

async function exists(file: string): Promise<boolean> {
  return access(file, constants.F_OK).then(() => true, () => false);
}

