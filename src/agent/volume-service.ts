import path from 'node:path';
import type { Logger } from 'pino';
import type { StoragePlugin } from '../../plugins/types.js';
import { prepareDomain } from '../hook/hook.js';
import { MailboxExtender } from '../mailbox/mailbox-extender.js';
import type { Extender } from '../monitor/ports.js';
import { followImageRecord, imageVirtualBytes, PARENT_TAG } from '../spm/image-record.js';
import { assertReducible, createChildVolume, createThinVolume, deleteThinVolume, reduceThinVolume, resizeThinImage } from '../spm/volume-lifecycle.js';
import type { Runner } from '../util/runner.js';
import { TideError } from '../errors.js';
import type { VolumeService } from './control-server.js';

/** The hook asked about another storage domain than this agent serves (two configurations disagree). */
export class StorageDomainMismatchError extends TideError {
  readonly code = 'storage-domain-mismatch';

  constructor(readonly asked: string, readonly served: string) {
    super(`the hook's configuration names storage domain ${asked}, this agent serves ${served}; make /etc/tideline/tideline.conf and the agent's flags agree`);
  }
}

/** A volume a VM on this host has open cannot be deactivated here. */
export class VolumeInUseHereError extends TideError {
  readonly code = 'volume-in-use';

  constructor(readonly volume: string, readonly vm: string) {
    super(`volume ${volume} is the disk of VM ${vm} on this host; stop the VM before deactivating it`);
  }
}

export interface VolumeServiceOptions {
  plugin: StoragePlugin;
  logger: Logger;
  extender: Extender;
  run: Runner;
  /** Makes this host's inventory current on the mailbox (src/mailbox/inventory-publisher.ts). */
  publishInventory?: () => Promise<void>;
  /** The VM on this host whose disk the volume is, if any (what the agent watches). */
  usedBy?: (volume: string) => string | undefined;
  /** A volume was reduced: whatever here watches it as a backing layer follows its new size. */
  reduced?: (volume: string, volumeBytes: number) => void;
  /** Grows the image live through the VM here that has it open (libvirt's blockresize); the VM's name, or undefined when none here has it. */
  resizeLive?: (volume: string, virtualBytes: number) => Promise<string | undefined>;
}

/** A VM here has the volume open and this agent cannot resize it live (plain QEMU). */
export class LiveResizeUnavailableError extends TideError {
  readonly code = 'live-resize-unavailable';

  constructor(readonly volume: string, readonly vm: string) {
    super(`volume ${volume} is the disk of VM ${vm} on this host, which tideline follows over QMP: grow it there with QMP block_resize, then run 'tideline volume resize' again to record the new size`);
  }
}

/**
 * What the control socket asks of the storage domain. With a mailbox the SPM
 * does the work and this host only refreshes what it has active; the checks
 * that need this host's view (is the volume open here?) run here first, since
 * the SPM cannot see other hosts' activations. Without a mailbox this agent
 * is the domain's one writer and does it all itself.
 */
export function volumeService(options: VolumeServiceOptions): VolumeService {
  const { plugin, extender, run } = options;
  const publishInventory = options.publishInventory ?? (() => Promise.resolve());
  // Host-local either way: activation changes what this host sees, and the SPM learns it from the inventory.
  const activation = {
    activate: async (volume: string) => {
      const path = await plugin.activate(volume);
      const sizeBytes = await plugin.refresh(volume);
      await publishInventory();
      return { path, sizeBytes };
    },
    deactivate: async (volume: string) => {
      const vm = options.usedBy?.(volume);
      if (vm !== undefined) throw new VolumeInUseHereError(volume, vm);
      await plugin.deactivate(volume);
      await publishInventory();
    },
    prepareDomain: async (request: { domain: string; xml: string; vg?: string; loopDomain?: string }) => {
      const asked = request.vg ?? (request.loopDomain === undefined ? undefined : path.resolve(request.loopDomain));
      const served = request.vg ? plugin.domain : path.resolve(plugin.domain);
      if (asked === undefined || asked !== served) throw new StorageDomainMismatchError(asked ?? 'none', plugin.domain);
      const outcome = await prepareDomain(request.domain, request.xml, request.vg, () => Promise.resolve(plugin));
      // The SPM refuses to delete what this host now has active: it learns that from the inventory, at once.
      await publishInventory();
      return outcome;
    },
  };
  /**
   * Live when a VM here has the volume open (QEMU rewrites the header, and
   * the SPM then records what the header says); offline otherwise, where
   * the image is grown by the domain's one writer.
   */
  const resize = async (volume: string, virtualBytes: number, offline: (volume: string, virtualBytes: number) => Promise<unknown>): Promise<{ live: string | undefined }> => {
    const live = await options.resizeLive?.(volume, virtualBytes);
    if (live === undefined) {
      const vm = options.usedBy?.(volume);
      if (vm !== undefined && (await imageVirtualBytes(plugin, volume)) < virtualBytes) throw new LiveResizeUnavailableError(volume, vm);
    }
    await offline(volume, virtualBytes);
    return { live };
  };
  // Extensions asked for by hand (a block commit's base) go the monitor's way: through the SPM, then refreshed here.
  const extend = async (volume: string, sizeBytes: number): Promise<number> => {
    await extender.extend(volume, sizeBytes);
    return extender.refresh(volume);
  };
  if (!(extender instanceof MailboxExtender)) {
    return {
      create: async (volume, sizeBytes, virtualBytes) => (await createThinVolume(plugin, run, volume, sizeBytes, virtualBytes)).sizeBytes,
      createChild: async (volume, parent, sizeBytes) => (await createChildVolume(plugin, run, volume, parent, sizeBytes)).sizeBytes,
      remove: (volume) => deleteThinVolume(plugin, run, volume, { logger: options.logger }),
      reduce: async (volume, freeTargetBytes) => {
        const sizeBytes = await reduceThinVolume(plugin, run, volume, freeTargetBytes);
        options.reduced?.(volume, sizeBytes);
        return sizeBytes;
      },
      reparent: async (volume, parent) => void (await plugin.setTag(volume, PARENT_TAG, parent)),
      followImage: async (volume) => void (await followImageRecord(plugin, volume, options.logger)),
      resize: (volume, virtualBytes) => resize(volume, virtualBytes, (name, bytes) => resizeThinImage(plugin, run, name, bytes)),
      extend,
      ...activation,
    };
  }
  const spm = extender;
  return {
    create: (volume, sizeBytes, virtualBytes) => spm.create(volume, sizeBytes, virtualBytes),
    createChild: (volume, parent, sizeBytes) => spm.createChild(volume, parent, sizeBytes),
    // The SPM checks every host's inventory first; this host's is made current, so a volume deactivated a moment ago is not still listed.
    remove: async (volume) => {
      await publishInventory();
      await spm.remove(volume);
    },
    reduce: async (volume, freeTargetBytes) => {
      const activeHere = await assertReducible(plugin, volume);
      await publishInventory();
      const sizeBytes = await spm.reduce(volume, freeTargetBytes);
      // The VM here keeps reading the layer; its device must not outlast the extents the SPM gave back.
      if (activeHere) await plugin.refresh(volume);
      options.reduced?.(volume, sizeBytes);
      return sizeBytes;
    },
    reparent: (volume, parent) => spm.reparent(volume, parent),
    followImage: (volume) => spm.followImage(volume),
    // The SPM checks every host's inventory before it grows an image offline: this host's is made current first.
    resize: (volume, virtualBytes) =>
      resize(volume, virtualBytes, async (name, bytes) => {
        await publishInventory();
        return spm.resize(name, bytes);
      }),
    extend,
    ...activation,
  };
}
