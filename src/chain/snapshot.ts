import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { StoragePlugin } from '../../plugins/types.js';
import { TideError, errorMessage } from '../errors.js';
import { parseDomainXml } from '../libvirt/domain-xml.js';
import type { Virsh } from '../libvirt/virsh.js';
import { externalSnapshotXml, snapshotVolumeName, type NewTop } from './snapshot-xml.js';

/**
 * A live snapshot of a libvirt domain's thin disks: for each disk, the SPM
 * creates a new thin volume whose image is backed by the disk's current top
 * (through this host's agent and its mailbox slot), this host activates it,
 * and libvirt switches the running domain onto it (an external disk-only
 * snapshot that reuses the prepared block device). The old top is read-only
 * from then on and never grows again; the agent follows the new top within
 * one safety poll. If libvirt refuses, the new volumes are deleted again and
 * the domain goes on as before.
 */
export class SnapshotError extends TideError {
  readonly code = 'snapshot';
}

export interface SnapshotDependencies {
  virsh: Virsh;
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

export async function snapshotDomain(dependencies: SnapshotDependencies, domain: string, options: { targets?: readonly string[]; sizeBytes: number }): Promise<SnapshotLayer[]> {
  const { virsh, plugin } = dependencies;
  const info = parseDomainXml(await virsh.dumpXml(domain));
  const disks = info.disks.filter((disk) => disk.device === 'disk');
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
    const others = disks.map((disk) => disk.target).filter((target) => !wanted.includes(target));
    await switchOnto(virsh, domain, externalSnapshotXml(newTops, others));
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

async function switchOnto(virsh: Virsh, domain: string, xml: string): Promise<void> {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'tideline-snapshot-'));
  try {
    const file = path.join(directory, 'snapshot.xml');
    await writeFile(file, xml);
    // --no-metadata: the chain lives in the images and volume tags, not in libvirt's snapshot list.
    await virsh.virsh(['snapshot-create', '--domain', domain, '--xmlfile', file, '--disk-only', '--reuse-external', '--no-metadata', '--atomic']);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}
