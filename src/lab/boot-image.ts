import { createHash } from 'node:crypto';
import { access, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { TideError } from '../errors.js';
import { runPipeline, type Runner } from '../util/runner.js';
import { encodeCpio, type CpioEntry } from './cpio.js';
import { guestInitScript, VIRTIO_MODULES } from './guest-init.js';

/**
 * The lab guest: Debian's own kernel (unpacked from its package into the
 * cache, so the host's /boot is never touched) and a busybox initramfs built
 * here. Built once; later runs reuse the cache.
 */
export interface BootImage {
  kernel: string;
  initrd: string;
  kernelVersion: string;
}

export class BootImageError extends TideError {
  readonly code = 'boot-image';
}

const KERNEL_META_PACKAGE = 'linux-image-amd64';
/**
 * What the lab takes out of the kernel package: the kernel and the modules the
 * guests load. The storage hosts (src/lab/storage-host-image.ts) also need
 * device-mapper, its delay and flakey targets, and virtio-serial for their
 * guest agent. A cache unpacked before a module was added is unpacked again.
 */
const KERNEL_FILES = [
  './boot/vmlinuz-*',
  './lib/modules/*/kernel/drivers/virtio/*',
  './lib/modules/*/kernel/drivers/block/virtio_blk.ko',
  './lib/modules/*/kernel/drivers/char/virtio_console.ko',
  './lib/modules/*/kernel/drivers/md/dm-mod.ko',
  './lib/modules/*/kernel/drivers/md/dm-delay.ko',
  './lib/modules/*/kernel/drivers/md/dm-flakey.ko',
];
const KERNEL_CACHE_FORMAT = 'dm-1';
const BUSYBOX_PATHS = ['/bin/busybox', '/usr/bin/busybox'];
const APT_TIMEOUT_MS = 300_000;

export function defaultCacheDir(): string {
  return process.env.TIDELINE_CACHE_DIR ?? '/var/cache/tideline/lab';
}

export async function ensureBootImage(options: { cacheDir: string; run: Runner; logger: Logger }): Promise<BootImage> {
  const { cacheDir, run, logger } = options;
  const unpacked = await ensureKernel(cacheDir, run, logger);
  const { version } = unpacked;
  const kernel = kernelImagePath(unpacked);

  const busybox = await readBusybox();
  const modules = await Promise.all(VIRTIO_MODULES.map(async (name) => ({ name, data: await readFile(kernelModulePath(unpacked, name)) })));
  const init = Buffer.from(guestInitScript());
  const digest = createHash('sha256').update(version).update(busybox).update(init);
  for (const module of modules) digest.update(module.data);
  const initrd = path.join(cacheDir, `initrd-${digest.digest('hex').slice(0, 16)}.cpio`);
  if (!(await exists(initrd))) {
    const entries: CpioEntry[] = [
      ...['bin', 'dev', 'proc', 'sys', 'tmp', 'lib', 'lib/modules'].map((dir) => ({ kind: 'directory' as const, path: dir })),
      // The kernel opens /dev/console before /init runs, so it must exist in the archive itself.
      { kind: 'char-device', path: 'dev/console', major: 5, minor: 1 },
      { kind: 'file', path: 'bin/busybox', data: busybox, mode: 0o755 },
      { kind: 'file', path: 'init', data: init, mode: 0o755 },
      ...modules.map((module) => ({ kind: 'file' as const, path: `lib/modules/${module.name}.ko`, data: module.data })),
    ];
    await writeAtomically(initrd, encodeCpio(entries));
    logger.info({ initrd }, 'built lab initramfs');
  }
  return { kernel, initrd, kernelVersion: version };
}

/** The unpacked kernel package: its version and the directory holding `boot/` and `lib/modules/`. */
export interface UnpackedKernel {
  version: string;
  root: string;
}

/** The directory of a module of the unpacked kernel, by the module's name. */
export function kernelModulePath(kernel: UnpackedKernel, module: string): string {
  const drivers = path.join(kernel.root, 'lib', 'modules', kernel.version, 'kernel', 'drivers');
  if (module === 'virtio_blk') return path.join(drivers, 'block', `${module}.ko`);
  if (module === 'virtio_console') return path.join(drivers, 'char', `${module}.ko`);
  if (module.startsWith('dm-')) return path.join(drivers, 'md', `${module}.ko`);
  return path.join(drivers, 'virtio', `${module}.ko`);
}

export async function ensureKernel(cacheDir: string, run: Runner, logger: Logger): Promise<UnpackedKernel> {
  await mkdir(cacheDir, { recursive: true });
  for (const name of await readdir(cacheDir)) {
    if (!name.startsWith('kernel-') || name.endsWith('.partial')) continue;
    const root = path.join(cacheDir, name);
    if ((await readFile(path.join(root, '.format'), 'utf8').catch(() => '')) === KERNEL_CACHE_FORMAT) return { version: name.slice('kernel-'.length), root };
    logger.info({ root }, 'lab kernel cache lacks modules the lab now needs; unpacking again');
    await rm(root, { recursive: true, force: true });
  }

  const { stdout } = await run('apt-cache', ['depends', KERNEL_META_PACKAGE], { timeoutMs: 60_000 });
  const packageName = /Depends:\s+(linux-image-[^\s]+)/.exec(stdout)?.[1];
  if (!packageName) throw new BootImageError(`cannot tell which kernel ${KERNEL_META_PACKAGE} stands for; run 'apt-get update' and retry`);
  const version = packageName.slice('linux-image-'.length);
  logger.info({ package: packageName }, 'fetching the lab guest kernel (once)');

  const root = await unpackDebianPackage({ cacheDir, packageName, into: `kernel-${version}`, files: KERNEL_FILES, run, format: KERNEL_CACHE_FORMAT });
  return { version, root };
}

/**
 * Downloads one Debian package (never installs it) and unpacks the named
 * files into `cacheDir/into`, atomically: a directory there is complete.
 * `format` is written beside them so a later version of the lab can tell an
 * outdated unpacking from a current one.
 */
export async function unpackDebianPackage(options: { cacheDir: string; packageName: string; into: string; files: readonly string[]; run: Runner; format: string }): Promise<string> {
  const { cacheDir, packageName, run } = options;
  const partial = path.join(cacheDir, `${options.into}.partial`);
  await rm(partial, { recursive: true, force: true });
  await mkdir(partial, { recursive: true });
  try {
    await run('apt-get', ['download', packageName], { timeoutMs: APT_TIMEOUT_MS, cwd: partial });
  } catch (error) {
    throw new BootImageError(`apt-get download ${packageName} failed; run 'apt-get update' and check that a Debian mirror is reachable`, { cause: error });
  }
  const deb = (await readdir(partial)).find((name) => name.endsWith('.deb'));
  if (!deb) throw new BootImageError(`apt-get download ${packageName} left no .deb in ${partial}`);
  await runPipeline(['dpkg-deb', ['--fsys-tarfile', path.join(partial, deb)]], ['tar', ['-x', '-C', partial, '--wildcards', ...options.files]], APT_TIMEOUT_MS);
  await rm(path.join(partial, deb));
  await writeFile(path.join(partial, '.format'), options.format);
  const root = path.join(cacheDir, options.into);
  await rm(root, { recursive: true, force: true });
  await rename(partial, root);
  return root;
}

export function kernelImagePath(kernel: UnpackedKernel): string {
  return path.join(kernel.root, 'boot', `vmlinuz-${kernel.version}`);
}

export function readBusybox(): Promise<Buffer> {
  return readFirst(BUSYBOX_PATHS, 'busybox is missing: install the busybox-static package');
}

async function readFirst(paths: readonly string[], missing: string): Promise<Buffer> {
  for (const candidate of paths) {
    try {
      return await readFile(candidate);
    } catch {
      // try the next location
    }
  }
  throw new BootImageError(missing);
}

export async function writeAtomically(file: string, data: Uint8Array): Promise<void> {
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, data);
  await rename(temporary, file);
}

export async function exists(file: string): Promise<boolean> {
  return access(file).then(() => true, () => false);
}
