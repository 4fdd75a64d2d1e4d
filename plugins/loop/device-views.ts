import { mkdir, readlink, rm, symlink } from 'node:fs/promises';
import path from 'node:path';
import type { Runner } from '../../src/util/runner.js';
import { attachLoop, detachLoop, listLoopDevices, loopDevicesFor, type LoopDevice } from './loop-devices.js';

/**
 * Which loop devices of a volume file a host uses: the one thing that differs
 * between the lab's hosts. On a cluster every host has its own device-mapper
 * table for an LV, and `lvchange --refresh` on one host changes nothing on
 * another; that is the gap live migration must close. A host view gives the
 * lab the same: each host attaches its own loop device to the volume file,
 * `losetup -c` on it changes no other host's size, and the host reaches it
 * by a path of its own (`DOMAIN/hosts/NAME/VOLUME`, a symlink to the device).
 */
export interface DeviceView {
  /**
   * The devices this host sees the volume through (the first is the one it
   * gives QEMU). `attached`: the machine's loop devices when the caller
   * already listed them (one listing for many volumes).
   */
  devices(file: string, volume: string, attached?: readonly LoopDevice[]): Promise<string[]>;
  /** Makes the volume usable on this host; returns the path QEMU opens. */
  attach(file: string, volume: string): Promise<string>;
  detach(file: string, volume: string): Promise<void>;
  /** The path `attach` handed out, while the volume is attached here; undefined when it is not. */
  activePath(file: string, volume: string): Promise<string | undefined>;
  /** The volume behind a path this view hands out, if it is one. */
  volumeForViewPath(devicePath: string): string | undefined;
}

/** One host (or none told apart): every loop device attached to the file is this host's. */
export function sharedView(run: Runner): DeviceView {
  return {
    devices: async (file, _volume, attached) => (attached ? attached.filter((loop) => loop.backingFile === file).map((loop) => loop.device) : loopDevicesFor(file)),
    attach: async (file) => (await loopDevicesFor(file))[0] ?? attachLoop(run, file),
    detach: async (file) => {
      for (const device of await loopDevicesFor(file)) await detachLoop(run, device);
    },
    activePath: async (file) => (await loopDevicesFor(file))[0],
    volumeForViewPath: () => undefined,
  };
}

export const HOSTS_DIR = 'hosts';
const HOST_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

export function isHostViewName(name: string): boolean {
  return HOST_NAME.test(name) && name !== '.' && name !== '..';
}

/**
 * The volume a path in any host's view names (DOMAIN/hosts/NAME/VOLUME), as
 * /dev/VG/LV names one on every host: a migrated domain keeps its disk path,
 * the lab's per-host mount namespaces put each host's own view under that
 * one name, and QEMU writes that path into an image's backing file (a block
 * commit or pull), which the SPM, with no view of its own, reads back.
 */
export function volumeInHostView(domainDirectory: string, devicePath: string): string | undefined {
  const parent = path.dirname(path.resolve(devicePath));
  return path.dirname(parent) === path.resolve(domainDirectory, HOSTS_DIR) && isHostViewName(path.basename(parent)) ? path.basename(devicePath) : undefined;
}

/** One host of several: only the loop devices this host attached, found through its own symlinks. */
export function hostView(run: Runner, domainDirectory: string, host: string): DeviceView {
  const directory = path.resolve(domainDirectory, HOSTS_DIR, host);
  const linkOf = (volume: string) => path.join(directory, volume);

  const ownDevice = async (file: string, volume: string, attachedNow?: readonly LoopDevice[]): Promise<string | undefined> => {
    const device = await readlink(linkOf(volume)).catch(() => undefined);
    if (!device) return undefined;
    const attached = (attachedNow ?? (await listLoopDevices())).find((loop) => loop.device === device);
    // A link left by a crash, or to a device since reused for another file, is not this host's view.
    return attached?.backingFile === file ? device : undefined;
  };

  return {
    devices: async (file, volume, attached) => {
      const device = await ownDevice(file, volume, attached);
      return device ? [device] : [];
    },
    attach: async (file, volume) => {
      if (await ownDevice(file, volume)) return linkOf(volume);
      await mkdir(directory, { recursive: true });
      const device = await attachLoop(run, file);
      await rm(linkOf(volume), { force: true });
      await symlink(device, linkOf(volume));
      return linkOf(volume);
    },
    detach: async (file, volume) => {
      const device = await ownDevice(file, volume);
      if (device) await detachLoop(run, device);
      await rm(linkOf(volume), { force: true });
    },
    activePath: async (file, volume) => ((await ownDevice(file, volume)) ? linkOf(volume) : undefined),
    volumeForViewPath: (devicePath) => volumeInHostView(domainDirectory, devicePath),
  };
}
