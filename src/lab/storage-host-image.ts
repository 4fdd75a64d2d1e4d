import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Runner } from '../util/runner.js';
import { BootImageError, ensureKernel, exists, kernelImagePath, kernelModulePath, readBusybox, unpackDebianPackage, writeAtomically, type BootImage } from './boot-image.js';
import { encodeCpio, type CpioEntry } from './cpio.js';
import { STORAGE_HOST_LVM_CONF, STORAGE_HOST_MODULES, storageHostInitScript } from './storage-host-init.js';

/**
 * The boot image of a storage host guest (src/lab/storage-host.ts): the lab's
 * Debian kernel, and an initramfs with busybox, LVM, qemu-img, qemu-io,
 * util-linux's blkdiscard and blockdev, dmsetup and the QEMU guest agent,
 * each with the shared libraries `ldd` names. All of them are this machine's
 * own binaries from Debian packages, except the guest agent, which is
 * downloaded and unpacked into the cache like the kernel (never installed on
 * the host). Built once per content; later runs reuse the cache.
 */
const GUEST_AGENT_PACKAGE = 'qemu-guest-agent';
const GUEST_AGENT_FORMAT = 'qga-1';
const LVM_BINARY = '/sbin/lvm';
/** The LVM commands tideline and its tests call; each is a link to /sbin/lvm, as on the host. */
const LVM_COMMANDS = ['pvcreate', 'pvremove', 'pvs', 'vgcreate', 'vgchange', 'vgremove', 'vgs', 'lvcreate', 'lvremove', 'lvextend', 'lvreduce', 'lvresize', 'lvchange', 'lvs', 'lvrename'];
const HOST_BINARIES = [LVM_BINARY, '/usr/bin/qemu-img', '/usr/bin/qemu-io', '/sbin/blkdiscard', '/sbin/blockdev', '/sbin/dmsetup'];
const LDD_TIMEOUT_MS = 10_000;

export async function ensureStorageHostImage(options: { cacheDir: string; run: Runner; logger: Logger }): Promise<BootImage> {
  const { cacheDir, run, logger } = options;
  const kernel = await ensureKernel(cacheDir, run, logger);
  const guestAgent = await ensureGuestAgent(cacheDir, run, logger);

  const binaries = [...HOST_BINARIES, guestAgent];
  for (const binary of binaries) {
    if (!(await exists(binary))) throw new BootImageError(`${binary} is missing; run scripts/setup.sh (it installs lvm2, qemu-utils and util-linux)`);
  }
  const libraries = new Set<string>();
  for (const binary of binaries) for (const library of await sharedLibraries(binary, run)) libraries.add(library);

  const files: Array<{ path: string; data: Uint8Array; mode: number }> = [];
  files.push({ path: 'bin/busybox', data: await readBusybox(), mode: 0o755 });
  for (const binary of HOST_BINARIES) files.push({ path: binary.slice(1), data: await readFile(binary), mode: 0o755 });
  files.push({ path: 'usr/sbin/qemu-ga', data: await readFile(guestAgent), mode: 0o755 });
  for (const library of [...libraries].sort()) files.push({ path: library.slice(1), data: await readFile(library), mode: 0o755 });
  for (const module of STORAGE_HOST_MODULES) files.push({ path: `lib/modules/${module}.ko`, data: await readFile(kernelModulePath(kernel, module)), mode: 0o644 });
  files.push({ path: 'init', data: Buffer.from(storageHostInitScript()), mode: 0o755 });
  files.push({ path: 'etc/lvm/lvm.conf', data: Buffer.from(STORAGE_HOST_LVM_CONF), mode: 0o644 });

  const digest = createHash('sha256').update(kernel.version);
  for (const file of files) digest.update(file.path).update(file.data);
  const initrd = path.join(cacheDir, `storage-host-${digest.digest('hex').slice(0, 16)}.cpio`);
  if (!(await exists(initrd))) {
    const directories = new Set<string>(['bin', 'dev', 'proc', 'sys', 'tmp', 'etc', 'run', 'sbin', 'usr', 'usr/bin', 'usr/sbin', 'lib', 'lib/modules']);
    for (const file of files) {
      for (let dir = path.dirname(file.path); dir !== '.'; dir = path.dirname(dir)) directories.add(dir);
    }
    const entries: CpioEntry[] = [
      ...[...directories].sort().map((dir) => ({ kind: 'directory' as const, path: dir })),
      { kind: 'char-device', path: 'dev/console', major: 5, minor: 1 },
      ...files.map((file) => ({ kind: 'file' as const, ...file })),
      ...LVM_COMMANDS.map((command) => ({ kind: 'symlink' as const, path: `sbin/${command}`, target: 'lvm' })),
    ];
    await writeAtomically(initrd, encodeCpio(entries));
    logger.info({ initrd, libraries: libraries.size }, 'built storage host initramfs');
  }
  return { kernel: kernelImagePath(kernel), initrd, kernelVersion: kernel.version };
}

async function ensureGuestAgent(cacheDir: string, run: Runner, logger: Logger): Promise<string> {
  const root = path.join(cacheDir, GUEST_AGENT_PACKAGE);
  const binary = path.join(root, 'usr', 'sbin', 'qemu-ga');
  if ((await readFile(path.join(root, '.format'), 'utf8').catch(() => '')) === GUEST_AGENT_FORMAT && (await exists(binary))) return binary;
  logger.info({ package: GUEST_AGENT_PACKAGE }, 'fetching the QEMU guest agent for the storage host guests (once)');
  await unpackDebianPackage({ cacheDir, packageName: GUEST_AGENT_PACKAGE, into: GUEST_AGENT_PACKAGE, files: ['./usr/sbin/qemu-ga'], run, format: GUEST_AGENT_FORMAT });
  return binary;
}

/** The libraries (and the dynamic loader) a binary loads, as `ldd` resolves them on this machine. */
export async function sharedLibraries(binary: string, run: Runner): Promise<string[]> {
  const { stdout } = await run('ldd', [binary], { timeoutMs: LDD_TIMEOUT_MS });
  return parseLdd(binary, stdout);
}

export function parseLdd(binary: string, output: string): string[] {
  const libraries: string[] = [];
  for (const line of output.split('\n')) {
    const missing = /^\s*(\S+) => not found/.exec(line);
    if (missing) throw new BootImageError(`${binary} needs ${missing[1]}, which this machine lacks; install the Debian package that provides it`);
    const resolved = /=>\s*(\/\S+)/.exec(line)?.[1] ?? /^\s*(\/\S+)\s+\(/.exec(line)?.[1];
    if (resolved) libraries.push(resolved);
  }
  return libraries;
}
