/**
 * The one interface every storage backend implements. Sizes are bytes. A
 * "storage domain" is what the cluster shares: an LVM volume group on a LUN in
 * production, a directory in the lab.
 */
export interface VolumeInfo {
  name: string;
  /** Size as the storage (LVM metadata, the file) knows it. */
  sizeBytes: number;
  tags: Record<string, string>;
}

export interface StoragePlugin {
  readonly kind: string;
  /** Name of the storage domain (VG name, directory) for messages and logs. */
  readonly domain: string;
  /** Extensions are rounded up to this (the VG's extent size). */
  readonly extentBytes: number;

  create(volume: string, sizeBytes: number, tags?: Record<string, string>): Promise<VolumeInfo>;
  remove(volume: string): Promise<void>;
  /**
   * Sets one tag, replacing its old value, or removes it (`undefined`): the
   * SPM's record of a layer's parent after an inner commit or a block pull.
   */
  setTag(volume: string, key: string, value: string | undefined): Promise<VolumeInfo>;
  list(): Promise<VolumeInfo[]>;
  describe(volume: string): Promise<VolumeInfo>;
  /** Grows to an absolute size (rounded up to the extent size); the current size changes nothing; a smaller one is refused with ShrinkRefusedError. */
  extend(volume: string, targetBytes: number): Promise<VolumeInfo>;
  /**
   * Shrinks to an absolute size (rounded up to the extent size). Only for a
   * volume nobody has open, and only after the caller made sure the image
   * ends below it (src/spm/volume-lifecycle.ts reduceThinVolume); a larger
   * size than the current one is refused.
   */
  reduce(volume: string, targetBytes: number): Promise<VolumeInfo>;
  /** Makes this host see the volume's current size; returns the size this host now sees. */
  refresh(volume: string): Promise<number>;
  /** The size this host sees now, without refreshing (its device's size); undefined when the volume is not active here. */
  visibleBytes(volume: string): Promise<number | undefined>;
  /** Makes the volume usable on this host; returns its block device path. */
  activate(volume: string): Promise<string>;
  deactivate(volume: string): Promise<void>;
  /** Whether the volume is active (usable as a block device) on this host. */
  isActive(volume: string): Promise<boolean>;
  /** The block device path this host opens the volume by while it is active here; undefined when it is not. */
  activePath(volume: string): Promise<string | undefined>;
  /** Every volume of the domain active on this host: what the host's inventory publishes to the SPM. */
  activeVolumes(): Promise<string[]>;
  /**
   * The path by which every host opens this volume as another image's backing
   * file (it goes into the child's qcow2 header, so it must be the same on all
   * hosts): /dev/VG/LV, or the lab's volume file.
   */
  backingPath(volume: string): string;
  /** The volume behind a block device path on this host, if it belongs to this domain. */
  volumeForPath(path: string): Promise<string | undefined>;
  freeBytes(): Promise<number>;
}
