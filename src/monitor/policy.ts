import { GiB, MiB, alignUp } from '../util/sizes.js';

/**
 * When to extend a thin volume and by how much. One instance per drive: the
 * adaptive mode learns that drive's write rate and extension latency.
 */
export interface PolicySettings {
  /** How much one extension adds. */
  chunkBytes: number;
  /** Extend once less than this is free above the high-water mark. */
  freeTargetBytes: number;
  /** Volume sizes are multiples of this (the VG extent size). */
  extentBytes: number;
  /** Grow chunk and free target when the measured write rate would outrun an extension. */
  adaptive: boolean;
  /** Upper bound for the adaptive chunk and free target. */
  adaptiveMaxChunkBytes: number;
}

/**
 * Today's oVirt (VDSM 4.5 config.py): volume_utilization_chunk_mb = 2560 and
 * volume_utilization_percent = 20, i.e. extend when less than 80 % of a chunk
 * (2 GiB) is free. Hosts default to these until measured otherwise.
 */
export const OVIRT_CHUNK_BYTES = 2560 * MiB;
export const OVIRT_FREE_TARGET_BYTES = 2048 * MiB;
/** oVirt VGs use 128 MiB extents. */
export const OVIRT_EXTENT_BYTES = 128 * MiB;

export const DEFAULT_POLICY: PolicySettings = {
  chunkBytes: OVIRT_CHUNK_BYTES,
  freeTargetBytes: OVIRT_FREE_TARGET_BYTES,
  extentBytes: OVIRT_EXTENT_BYTES,
  adaptive: false,
  adaptiveMaxChunkBytes: 16 * GiB,
};

/** Headroom over (write rate x extension latency): latency has a tail, writes come in bursts. */
export const ADAPTIVE_SAFETY_FACTOR = 3;
/** Weight of the newest sample in the moving average of the write rate. */
const RATE_SMOOTHING = 0.5;
/**
 * The free target must cover the slow extensions, not the typical one: a
 * guest stalls on the one extension that took longest. The adaptive mode sizes
 * it by the slowest recent extension, forgotten by this factor per extension.
 * (The benchmark's qemu-io figure showed a mean-based free target stalling a
 * writer at 256 MiB/s on extensions in the tail.)
 */
const LATENCY_PEAK_DECAY = 0.9;
/**
 * An adaptive chunk covers at least this much writing at the measured rate, so
 * that a fast writer crosses thresholds, and meets the tail of the extension
 * latency, a few times a second at most rather than dozens.
 */
const ADAPTIVE_CHUNK_COVERS_MS = 1_000;
/** Samples closer than this say more about scheduling than about the guest... */
const MIN_RATE_SAMPLE_MS = 200;
/**
 * ...unless the guest wrote a whole free target in the meantime: a fast writer
 * must be learned within its first extensions, not after the first 200 ms
 * (80 MiB at 400 MiB/s, several stalls with small chunks).
 */
const MIN_FAST_RATE_SAMPLE_MS = 20;

export class ExtensionPolicy {
  private writeBytesPerMs = 0;
  /** 0 until an extension was measured: the configured sizes hold until then. */
  private extensionLatencyPeakMs = 0;
  private lastSample: { highWater: number; at: number } | undefined;

  constructor(readonly settings: PolicySettings) {}

  /** Free space that must stay above the high-water mark. */
  freeTarget(): number {
    if (!this.settings.adaptive) return this.settings.freeTargetBytes;
    const needed = this.writeBytesPerMs * this.extensionLatencyPeakMs * ADAPTIVE_SAFETY_FACTOR;
    return Math.min(this.settings.adaptiveMaxChunkBytes, Math.max(this.settings.freeTargetBytes, alignUp(needed, this.settings.extentBytes)));
  }

  chunk(): number {
    if (!this.settings.adaptive) return this.settings.chunkBytes;
    // A chunk no larger than the free target would cross the next threshold as soon as it is added.
    const wanted = Math.max(this.settings.chunkBytes, 2 * this.freeTarget(), alignUp(this.writeBytesPerMs * ADAPTIVE_CHUNK_COVERS_MS, this.settings.extentBytes));
    return Math.min(this.settings.adaptiveMaxChunkBytes, wanted);
  }

  /** Offset whose crossing should trigger the next extension. */
  threshold(volumeBytes: number): number {
    return Math.max(0, volumeBytes - this.freeTarget());
  }

  /** Less than the free target is left above the high-water mark; always true for a volume smaller than the free target. */
  needsExtension(volumeBytes: number, highWater: number): boolean {
    // Not threshold(): that is clamped at 0, and QEMU reads a threshold of 0 as "none", so a small fresh volume would never be extended before it fills.
    return highWater > volumeBytes - this.freeTarget();
  }

  /** Absolute size to ask for, never past the cap; equal to the current size when at the cap. */
  nextSize(volumeBytes: number, highWater: number, capBytes: number): number {
    // A chunk on top of the volume, but at least the free target above the high-water mark,
    // which matters when a lost event let the guest run far past the threshold.
    const wanted = Math.max(volumeBytes + this.chunk(), highWater + this.freeTarget());
    return Math.max(volumeBytes, Math.min(alignUp(wanted, this.settings.extentBytes), capBytes));
  }

  observeHighWater(highWater: number, at: number): void {
    const last = this.lastSample;
    if (!last || highWater < last.highWater) {
      this.lastSample = { highWater, at };
      return;
    }
    const elapsed = at - last.at;
    const wroteAFreeTarget = highWater - last.highWater >= this.settings.freeTargetBytes;
    if (elapsed < MIN_RATE_SAMPLE_MS && !(wroteAFreeTarget && elapsed >= MIN_FAST_RATE_SAMPLE_MS)) return;
    const rate = (highWater - last.highWater) / elapsed;
    this.writeBytesPerMs = this.writeBytesPerMs === 0 ? rate : RATE_SMOOTHING * rate + (1 - RATE_SMOOTHING) * this.writeBytesPerMs;
    this.lastSample = { highWater, at };
  }

  observeExtensionLatency(latencyMs: number): void {
    this.extensionLatencyPeakMs = Math.max(latencyMs, this.extensionLatencyPeakMs * LATENCY_PEAK_DECAY);
  }

  /** Bytes per second, for status and logs. */
  writeRate(): number {
    return this.writeBytesPerMs * 1000;
  }
}
