import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Runner } from '../../src/util/runner.js';

/**
 * Loop devices seen through sysfs (no process per lookup) and changed through
 * losetup. Kept apart from the plugin so tests can clean up by backing file.
 */
export interface LoopDevice {
  device: string;
  backingFile: string;
}

const SYS_BLOCK = '/sys/block';
const LOSETUP_TIMEOUT_MS = 10_000;

export async function listLoopDevices(): Promise<LoopDevice[]> {
  const names = (await readdir(SYS_BLOCK)).filter((name) => name.startsWith('loop'));
  const devices: LoopDevice[] = [];
  for (const name of names) {
    try {
      const backing = (await readFile(path.join(SYS_BLOCK, name, 'loop', 'backing_file'), 'utf8')).trim();
      devices.push({ device: `/dev/${name}`, backingFile: backing.replace(/ \(deleted\)$/, '') });
    } catch {
      // Not attached: sysfs has no loop/ directory for a free device.
    }
  }
  return devices;
}

export async function loopDevicesFor(backingFile: string): Promise<string[]> {
  return (await listLoopDevices()).filter((loop) => loop.backingFile === backingFile).map((loop) => loop.device);
}

export async function loopDeviceSize(device: string): Promise<number> {
  const sectors = await readFile(path.join(SYS_BLOCK, path.basename(device), 'size'), 'utf8');
  return Number(sectors.trim()) * 512;
}

export async function attachLoop(run: Runner, backingFile: string): Promise<string> {
  const { stdout } = await run('losetup', ['--find', '--show', backingFile], { timeoutMs: LOSETUP_TIMEOUT_MS });
  return stdout.trim();
}

/** `losetup -c`: the kernel re-reads the backing file's size, as `lvchange --refresh` does for an LV. */
export async function refreshLoop(run: Runner, device: string): Promise<void> {
  await run('losetup', ['--set-capacity', device], { timeoutMs: LOSETUP_TIMEOUT_MS });
}

export async function detachLoop(run: Runner, device: string): Promise<void> {
  await run('losetup', ['--detach', device], { timeoutMs: LOSETUP_TIMEOUT_MS });
}

/** Detaches every loop device whose backing file lies under a directory; for tests and `lab` cleanup. */
export async function detachLoopsUnder(run: Runner, directory: string): Promise<string[]> {
  const prefix = directory.endsWith('/') ? directory : `${directory}/`;
  const detached: string[] = [];
  for (const loop of await listLoopDevices()) {
    if (!loop.backingFile.startsWith(prefix)) continue;
    await detachLoop(run, loop.device).catch(() => undefined);
    detached.push(loop.device);
  }
  return detached;
}
