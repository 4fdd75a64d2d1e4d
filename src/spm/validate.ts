import type { VolumeInfo } from '../../plugins/types.js';
import { qcow2FullyAllocatedBytes } from '../monitor/qcow2-capacity.js';
import { alignUp } from '../util/sizes.js';
import { ReplyStatus } from '../mailbox/format.js';

/** Tag holding a volume's qcow2 virtual size; it sets the cap the SPM enforces. */
export const VIRTUAL_SIZE_TAG = 'virtual-bytes';

/** The largest size the SPM lets a volume grow to, or undefined when no cap is recorded. */
export function volumeCap(volume: VolumeInfo, extentBytes: number): number | undefined {
  const virtualBytes = Number(volume.tags[VIRTUAL_SIZE_TAG]);
  if (!Number.isSafeInteger(virtualBytes) || virtualBytes <= 0) return undefined;
  return alignUp(qcow2FullyAllocatedBytes(virtualBytes), extentBytes);
}

/** Checks an extend request against the volume as the SPM sees it (pure); undefined means go ahead. */
export function checkExtend(volume: VolumeInfo, targetBytes: number, extentBytes: number): ReplyStatus | undefined {
  if (targetBytes < volume.sizeBytes) return ReplyStatus.ShrinkRefused;
  const cap = volumeCap(volume, extentBytes);
  if (cap !== undefined && targetBytes > cap) return ReplyStatus.BeyondCap;
  return undefined;
}
