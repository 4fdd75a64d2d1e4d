import { constants } from 'node:fs';
import { access, mkdir, open, readdir, readFile, rename, rm, stat, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import type { Runner } from '../../src/util/runner.js';
import { MiB, alignUp } from '../../src/util/sizes.js';
import { assertVolumeName, DomainFullError, ShrinkRefusedError, StorageDomainError, VolumeExistsError, VolumeNotFoundError } from '../errors.js';
import type { StoragePlugin, VolumeInfo } from '../types.js';
import { detachLoop, loopDevicesFor, loopDeviceSize, refreshLoop, listLoopDevices } from './loop-devices.js';
import { HOSTS_DIR, hostView, isHostViewName, sharedView, type DeviceView } from './device-views.js';

/**
 * The lab's stand-in for a shared VG: a directory whose sparse files are the
 * LVs, attached as loop devices. Like a VG it has a fixed capacity, so "VG
 * full" happens here as it would on a LUN, and sizes are counted as allocated
 * extents whether or not the guest wrote them.
 */
const DOMAIN_FILE = 'domain.json';
const VOLUME_SUFFIX = '.img';
const TAGS_SUFFIX = '.tags.json';

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

export class LoopPlugin implements StoragePlugin {
  readonly kind = 'loop';
  readonly domain: string;

  private metadataQueue: Promise<unknown> = Promise.resolve();
  private sizes = new Map<string, number>();
  private sizesAsOf = Number.NaN;

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

  async setTag(volume: string, key: string, value: string): Promise<VolumeInfo> {
    return this.exclusive(async () => {
      const info = await this.describe(volume);
      const tags = { ...info.tags, [key]: value };
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
    return { name: volume, sizeBytes: await sizeOfVolume(this.fileOf(volume), volume, this.domain), tags: await this.tagsOf(volume) };
  }

  /**
   * Only the size check and the truncate are one at a time: the SPM extends
   * for many hosts at once, and everything inside this queue waits for
   * everything before it (50 hosts asking together, measured: about 1 ms per
   * extension with the tags read inside, the round trip's p50 near 100 ms).
   */
  async extend(volume: string, targetBytes: number): Promise<VolumeInfo> {
    const file = this.fileOf(volume);
    const sizeBytes = await this.exclusive(async () => {
      const size = await sizeOfVolume(file, volume, this.domain);
      if (targetBytes < size) throw new ShrinkRefusedError(volume, size, targetBytes);
      const target = alignUp(targetBytes, this.extentBytes);
      if (target <= size) return size;
      await this.assertRoom(volume, target - size);
      await truncate(file, target);
      this.sizes.set(path.basename(file), target);
      return target;
    });
    return { name: volume, sizeBytes, tags: await this.tagsOf(volume) };
  }

  private tagsOf(volume: string): Promise<Record<string, string>> {
    return readFile(this.tagsFileOf(volume), 'utf8').then((text) => JSON.parse(text) as Record<string, string>, () => ({}));
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
    const viewed = this.view.volumeForViewPath(devicePath);
    if (viewed) return viewed;
    const prefix = `${path.resolve(this.directory)}/`;
    const loop = (await listLoopDevices()).find((candidate) => candidate.device === devicePath);
    const file = loop?.backingFile ?? path.resolve(devicePath);
    if (!file.startsWith(prefix) || !file.endsWith(VOLUME_SUFFIX)) return undefined;
    return path.basename(file, VOLUME_SUFFIX);
  }

  async freeBytes(): Promise<number> {
    // Read again each time: the domain may have grown (growLoopDomain) since this plugin opened it.
    const { capacityBytes } = await readDomainFile(this.directory);
    return Math.max(0, capacityBytes - (await this.usedBytes()));
  }

  /**
   * The sum of all volume sizes. Stat'ing every volume on every extension made
   * the SPM's cost grow with the number of volumes, so the sizes are kept and
   * read again whenever the directory changes (a volume created or removed by
   * any process); extensions made here update them directly.
   */
  private async usedBytes(): Promise<number> {
    const directoryChanged = (await stat(this.directory)).mtimeMs;
    if (directoryChanged !== this.sizesAsOf) {
      const names = (await readdir(this.directory)).filter((name) => name.endsWith(VOLUME_SUFFIX));
      const sizes = await Promise.all(names.map(async (name) => [name, (await stat(path.join(this.directory, name)).catch(() => ({ size: 0 }))).size] as const));
      this.sizes = new Map(sizes);
      this.sizesAsOf = directoryChanged;
    }
    let used = 0;
    for (const size of this.sizes.values()) used += size;
    return used;
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

