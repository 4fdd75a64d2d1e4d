import type { Logger } from 'pino';
import { DomainFullError, InvalidVolumeNameError, VolumeExistsError, VolumeNotFoundError } from '../../plugins/errors.js';
import type { StoragePlugin } from '../../plugins/types.js';
import { errorCode, errorMessage } from '../errors.js';
import { Operation, ReplyStatus, type Request } from '../mailbox/format.js';
import { inventoryHolds } from '../mailbox/inventory.js';
import type { Mailbox } from '../mailbox/mailbox.js';
import type { Runner } from '../util/runner.js';
import { LeaseLostError } from './fencing.js';
import { followImageRecord, followImageSize, PARENT_TAG } from './image-record.js';
import { checkExtend, VIRTUAL_SIZE_TAG, volumeCap } from './validate.js';
import { createChildVolume, createThinVolume, deleteThinVolume, resizeThinImage, VirtualShrinkRefusedError, reduceThinVolume, VolumeHasChildrenError, VolumeInUseError } from './volume-lifecycle.js';

/** What one request is carried out with: the SPM's fenced plugin and runner (src/spm/fencing.ts). */
export interface RequestContext {
  hostId: number;
  plugin: StoragePlugin;
  run: Runner;
  logger: Logger;
  /** Refuses (VolumeInUseError) when another host may have the volume open; `action` says what would be refused. */
  assertUnusedElsewhere(volume: string, action: string): Promise<void>;
}

/** What the reply says; `detail` is for the SPM's log. */
export interface RequestOutcome {
  status: ReplyStatus;
  resultBytes: number;
  detail?: string;
}

/**
 * Carries out one mailbox request on the storage domain and says what the
 * reply is. Every refusal is a reply status; only a lost lease throws (no
 * reply: the host resends to whoever holds the lease now).
 */
export async function carryOutRequest(request: Request, context: RequestContext): Promise<RequestOutcome> {
  const { plugin, run, logger, hostId } = context;
  const ok = (resultBytes: number): RequestOutcome => ({ status: ReplyStatus.Ok, resultBytes });
  const refused = (status: ReplyStatus, resultBytes: number, detail: string): RequestOutcome => ({ status, resultBytes, detail });
  try {
    switch (request.operation) {
      case Operation.Create: {
        if (request.virtualBytes <= 0 || request.targetBytes <= 0) return refused(ReplyStatus.InvalidRequest, 0, 'create needs a positive initial size and virtual size');
        const cap = volumeCap({ name: request.volume, sizeBytes: 0, tags: { [VIRTUAL_SIZE_TAG]: String(request.virtualBytes) } }, plugin.extentBytes)!;
        if (request.targetBytes > cap) return refused(ReplyStatus.BeyondCap, 0, `initial size is beyond the cap of ${cap} bytes`);
        return ok((await createThinVolume(plugin, run, request.volume, request.targetBytes, request.virtualBytes, { 'created-by-host': String(hostId) })).sizeBytes);
      }
      case Operation.CreateChild:
        if (request.targetBytes <= 0 || !request.parent) return refused(ReplyStatus.InvalidRequest, 0, 'create-child needs a positive initial size and a parent volume');
        return ok((await createChildVolume(plugin, run, request.volume, request.parent, request.targetBytes, { 'created-by-host': String(hostId) })).sizeBytes);
      case Operation.Reparent:
        if (!request.parent || request.parent === request.volume) return refused(ReplyStatus.InvalidRequest, 0, 'reparent needs a parent volume other than the volume itself');
        await plugin.describe(request.parent);
        return ok((await plugin.setTag(request.volume, PARENT_TAG, request.parent)).sizeBytes);
      case Operation.FollowImage:
        return ok((await followImageRecord(plugin, request.volume, logger)).sizeBytes);
      case Operation.Resize:
        if (request.virtualBytes <= 0) return refused(ReplyStatus.InvalidRequest, 0, 'resize needs a positive virtual size');
        return ok((await resizeThinImage(plugin, run, request.volume, request.virtualBytes, (volume) => context.assertUnusedElsewhere(volume, 'resized offline'))).sizeBytes);
      case Operation.Reduce:
        // An inner layer may be reduced while open (volume-lifecycle.ts); the top of a chain never.
        return ok(await reduceThinVolume(plugin, run, request.volume, request.targetBytes, (volume) => context.assertUnusedElsewhere(volume, 'reduced')));
      case Operation.Delete:
        await deleteThinVolume(plugin, run, request.volume, { logger, assertUnusedElsewhere: (volume) => context.assertUnusedElsewhere(volume, 'deleted') });
        return ok(0);
      case Operation.Extend:
        return await extend(request, context);
      default: {
        // The decoder lets only known operations through; one added there and forgotten here must not extend anything.
        const unhandled: never = request.operation;
        return refused(ReplyStatus.InvalidRequest, 0, `operation ${String(unhandled)} is not served by this SPM`);
      }
    }
  } catch (error) {
    if (error instanceof LeaseLostError) throw error;
    if (error instanceof VolumeNotFoundError) return refused(ReplyStatus.UnknownVolume, 0, error.message);
    if (error instanceof VolumeExistsError) return refused(ReplyStatus.VolumeExists, 0, error.message);
    // The reply names the holding host in its result (0: the SPM's own host, or no host could be named).
    if (error instanceof VolumeInUseError) return refused(ReplyStatus.VolumeInUse, error.holderHostId ?? 0, error.message);
    if (error instanceof VolumeHasChildrenError) return refused(ReplyStatus.HasChildren, 0, error.message);
    if (error instanceof VirtualShrinkRefusedError) return refused(ReplyStatus.ShrinkRefused, error.currentBytes, error.message);
    if (error instanceof InvalidVolumeNameError) return refused(ReplyStatus.InvalidRequest, 0, error.message);
    if (error instanceof DomainFullError) return refused(ReplyStatus.DomainFull, await plugin.describe(request.volume).then((info) => info.sizeBytes, () => 0), error.message);
    return refused(ReplyStatus.Failed, 0, `${errorCode(error)}: ${errorMessage(error)}`);
  }
}

async function extend(request: Request, { plugin, logger }: RequestContext): Promise<RequestOutcome> {
  let volume = await plugin.describe(request.volume);
  let refusal = checkExtend(volume, request.targetBytes, plugin.extentBytes);
  if (refusal === ReplyStatus.BeyondCap) {
    // Beyond the recorded cap: the image may have grown since (blockresize). Its header decides.
    volume = await followImageSize(plugin, volume, logger);
    refusal = checkExtend(volume, request.targetBytes, plugin.extentBytes);
  }
  if (refusal !== undefined) return { status: refusal, resultBytes: volume.sizeBytes };
  return { status: ReplyStatus.Ok, resultBytes: (await plugin.extend(request.volume, request.targetBytes)).sizeBytes };
}

/**
 * The SPM sees activations on its own host only; every other host says what
 * it has active in its inventory block. A volume listed there may be open
 * in a VM: zeroing or shrinking it would destroy live data.
 */
export async function refuseIfOpenOnAnyHost(mailbox: Pick<Mailbox, 'readInventories'>, volume: string, action: string): Promise<void> {
  let inventories;
  try {
    inventories = await mailbox.readInventories();
  } catch (error) {
    throw new VolumeInUseError(`cannot tell whether another host has volume ${volume} open, so it is not ${action}: ${errorMessage(error)}`, { cause: error });
  }
  const holders: number[] = [];
  const unreadable: number[] = [];
  for (const [hostId, decoded] of inventories) {
    if (decoded.kind === 'valid' && inventoryHolds(decoded.value, volume)) holders.push(hostId);
    if (decoded.kind === 'invalid') unreadable.push(hostId);
  }
  if (holders.length > 0) {
    const hosts = holders.join(', ');
    throw new VolumeInUseError(`volume ${volume} is active on host ${hosts} (its inventory says so); it is not ${action}. Stop the VM using it there, or if host ${hosts} is down for good, run 'tideline mailbox forget-host' for it`, { holderHostId: holders[0]! });
  }
  if (unreadable.length > 0) throw new VolumeInUseError(`the inventory of host ${unreadable.join(', ')} is unreadable, so it may have volume ${volume} open; it is not ${action}. The next write of that host's agent repairs it`);
}
