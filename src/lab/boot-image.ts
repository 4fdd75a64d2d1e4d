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
const BUSYBOX_PATHS = ['/bin/busybox', '/usr/bin/busybox'];
const APT_TIMEOUT_MS = 300_000;

export function defaultCacheDir(): string {
  return process.env.TIDELINE_CACHE_DIR ?? '/var/cache/tideline/lab';
}

export async function ensureBootImage(options: { cacheDir: string; run: Runner; logger: Logger }): Promise<BootImage> {
  const { cacheDir, run, logger } = options;
  await mkdir(cacheDir, { recursive: true });
  const { version, root } = await ensureKernel(cacheDir, run, logger);
  const kernel = path.join(root, 'boot', `vmlinuz-${version}`);
  const moduleDir = path.join(root, 'lib', 'modules', version, 'kernel', 'drivers');

  const busybox = await readFirst(BUSYBOX_PATHS, 'busybox is missing: install the busybox-static package');
  const modules = await Promise.all(
    VIRTIO_MODULES.map(async (name) => ({
      name,
      data: await readFile(path.join(moduleDir, name === 'virtio_blk' ? 'block' : 'virtio', `${name}.ko`)),
    })),
  );
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

async function ensureKernel(cacheDir: string, run: Runner, logger: Logger): Promise<{ version: string; root: string }> {
  const cached = (await readdir(cacheDir)).find((name) => name.startsWith('kernel-') && !name.endsWith('.partial'));
  if (cached) return { version: cached.slice('kernel-'.length), root: path.join(cacheDir, cached) };

  const { stdout } = await run('apt-cache', ['depends', KERNEL_META_PACKAGE], { timeoutMs: 60_000 });
  const packageName = /Depends:\s+(linux-image-[^\s]+)/.exec(stdout)?.[1];
  if (!packageName) throw new BootImageError(`cannot tell which kernel ${KERNEL_META_PACKAGE} stands for; run 'apt-get update' and retry`);
  const version = packageName.slice('linux-image-'.length);
  logger.info({ package: packageName }, 'fetching the lab guest kernel (once)');

  const partial = path.join(cacheDir, `kernel-${version}.partial`);
  await rm(partial, { recursive: true, force: true });
  await mkdir(partial, { recursive: true });
  try {
    await run('apt-get', ['download', packageName], { timeoutMs: APT_TIMEOUT_MS, cwd: partial });
  } catch (error) {
    throw new BootImageError(`apt-get download ${packageName} failed; run 'apt-get update' and check that a Debian mirror is reachable`, { cause: error });
  }
  const deb = (await readdir(partial)).find((name) => name.endsWith('.deb'));
  if (!deb) throw new BootImageError(`apt-get download ${packageName} left no .deb in ${partial}`);
  await runPipeline(
    ['dpkg-deb', ['--fsys-tarfile', path.join(partial, deb)]],
    ['tar', ['-x', '-C', partial, '--wildcards', './boot/vmlinuz-*', './lib/modules/*/kernel/drivers/virtio/*', './lib/modules/*/kernel/drivers/block/virtio_blk.ko']],
    APT_TIMEOUT_MS,
  );
  await rm(path.join(partial, deb));
  const root = path.join(cacheDir, `kernel-${version}`);
  await rename(partial, root);
  return { version, root };
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

async function writeAtomically(file: string, data: Uint8Array): Promise<void> {
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, data);
  await rename(temporary, file);
}

async function exists(file: string): Promise<boolean> {
  return access(file).then(() => true, () => false);
}
