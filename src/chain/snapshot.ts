import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { StoragePlugin } from '../../plugins/types.js';
import { TideError, errorMessage } from '../errors.js';
import { parseDomainXml } from '../libvirt/domain-xml.js';
import type { Virsh } from '../libvirt/virsh.js';
import { describeDrives, type BlockInfo, type BlockStats, type QemuDrive } from '../qemu/block-info.js';
import type { QmpClient } from '../qmp/client.js';
import { externalSnapshotXml, snapshotVolumeName, type NewTop } from './snapshot-xml.js';

/**
 * A live snapshot of a running VM's thin disks: for each disk, the SPM
 * creates a new thin volume whose image is backed by the disk's current top
 * (through this host's agent and its mailbox slot), this host activates it,
 * and the running VM is switched onto it (libvirt: an external disk-only
 * snapshot reusing the prepared block device; plain QEMU: blockdev-snapshot). The old top is read-only
 * from then on and never grows again; the agent follows the new top within
 * one safety poll. If the switch is refused, the new volumes are deleted again
 * and the VM goes on as before.
 */
export class SnapshotError extends TideError {
  readonly code = 'snapshot';
}

/** The running VM a snapshot switches: its disks, and the switch itself (libvirt, or QEMU's QMP). */
export interface SnapshotVm {
  readonly name: string;
  /** Every disk (not cdrom) with the path of its active layer. */
  disks(): Promise<Array<{ target: string; source: string | undefined }>>;
  /** Puts each new top on its disk, all or none; other disks are left alone. */
  switchOnto(newTops: readonly NewTop[], otherTargets: readonly string[]): Promise<void>;
}

export interface SnapshotDependencies {
  vm: SnapshotVm;
  plugin: StoragePlugin;
  /** Through the agent: the SPM creates `volume` backed by `parent`. */
  createChild(volume: string, parent: string, sizeBytes: number): Promise<number>;
  remove(volume: string): Promise<void>;
  now(): Date;
}

export interface SnapshotLayer {
  target: string;
  parent: string;
  volume: string;
  devicePath: string;
}

export async function snapshotDomain(dependencies: SnapshotDependencies, options: { targets?: readonly string[]; sizeBytes: number }): Promise<SnapshotLayer[]> {
  const { vm, plugin } = dependencies;
  const domain = vm.name;
  const disks = await vm.disks();
  const thin: Array<{ target: string; volume: string }> = [];
  for (const disk of disks) {
    const volume = disk.source ? await plugin.volumeForPath(disk.source) : undefined;
    if (volume) thin.push({ target: disk.target, volume });
  }
  const wanted = options.targets && options.targets.length > 0 ? options.targets : thin.map((disk) => disk.target);
  for (const target of wanted) {
    if (!disks.some((disk) => disk.target === target)) throw new SnapshotError(`domain ${domain} has no disk ${target} (its disks: ${disks.map((disk) => disk.target).join(', ') || 'none'})`);
    if (!thin.some((disk) => disk.target === target)) throw new SnapshotError(`disk ${target} of domain ${domain} is not on a volume of storage domain ${plugin.domain}; tideline snapshots only its own volumes`);
  }
  if (wanted.length === 0) throw new SnapshotError(`domain ${domain} has no disk on storage domain ${plugin.domain}`);

  const layers: SnapshotLayer[] = [];
  try {
    for (const target of wanted) {
      const parent = thin.find((disk) => disk.target === target)!.volume;
      const volume = snapshotVolumeName(domain, target, dependencies.now());
      await dependencies.createChild(volume, parent, options.sizeBytes);
      const layer: SnapshotLayer = { target, parent, volume, devicePath: '' };
      layers.push(layer);
      layer.devicePath = await plugin.activate(volume);
    }
    const newTops: NewTop[] = layers.map((layer) => ({ target: layer.target, devicePath: layer.devicePath }));
    await vm.switchOnto(newTops, disks.map((disk) => disk.target).filter((target) => !wanted.includes(target)));
    return layers;
  } catch (error) {
    // Nothing points at the new volumes yet: give them back so no orphan remains.
    for (const layer of layers) {
      await plugin.deactivate(layer.volume).catch(() => undefined);
      await dependencies.remove(layer.volume).catch(() => undefined);
    }
    if (error instanceof SnapshotError) throw error;
    throw new SnapshotError(`snapshot of ${domain} failed, nothing changed (new volumes removed): ${errorMessage(error)}`, { cause: error });
  }
}

/** A libvirt domain: an external disk-only snapshot that reuses the prepared block devices. */
export function libvirtSnapshotVm(virsh: Virsh, domain: string): SnapshotVm {
  return {
    name: domain,
    disks: async () => parseDomainXml(await virsh.dumpXml(domain)).disks.filter((disk) => disk.device === 'disk').map((disk) => ({ target: disk.target, source: disk.source })),
    switchOnto: async (newTops, otherTargets) => {
      const directory = await mkdtemp(path.join(os.tmpdir(), 'tideline-snapshot-'));
      try {
        const file = path.join(directory, 'snapshot.xml');
        await writeFile(file, externalSnapshotXml(newTops, otherTargets));
        // --no-metadata: the chain lives in the images and volume tags, not in libvirt's snapshot list.
        await virsh.virsh(['snapshot-create', '--domain', domain, '--xmlfile', file, '--disk-only', '--reuse-external', '--no-metadata', '--atomic']);
      } finally {
        await rm(directory, { recursive: true, force: true });
      }
    },
  };
}

/**
 * A plain QEMU through a QMP socket of its own (not the agent's): each new top
 * is opened as a qcow2 node over the block device, without its backing file
 * (QEMU links it to the current top), and put on top with blockdev-snapshot,
 * all in one transaction.
 */
export function qmpSnapshotVm(client: QmpClient, name: string): SnapshotVm {
  let drives: QemuDrive[] = [];
  return {
    name,
    disks: async () => {
      drives = describeDrives(await client.execute<BlockInfo[]>('query-block'), await client.execute<BlockStats[]>('query-blockstats'));
      return drives.map((drive) => ({ target: drive.drive, source: drive.path }));
    },
    switchOnto: async (newTops) => {
      const overlays = newTops.map((top) => ({ top, node: `tl-${top.target}-${Date.now().toString(36)}`, current: drives.find((drive) => drive.drive === top.target)!.formatNode }));
      for (const { top, node } of overlays) {
        await client.execute('blockdev-add', { driver: 'qcow2', 'node-name': node, file: { driver: 'host_device', filename: top.devicePath, aio: 'native', cache: { direct: true } }, backing: null });
      }
      await client.execute('transaction', { actions: overlays.map(({ node, current }) => ({ type: 'blockdev-snapshot', data: { node: current, overlay: node } })) });
    },
  };
}
