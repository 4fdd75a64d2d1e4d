import { errorCode, errorMessage } from '../errors.js';
import { alignUp } from '../util/sizes.js';
import { ExtensionPolicy, type PolicySettings } from './policy.js';

/**
 * What one thin drive knows and decides, with no I/O and no timers: the
 * monitor feeds it observations and asks it what to do next.
 */
export interface DriveConfig {
  /** Name in the VM, e.g. vda. */
  drive: string;
  /** Storage volume behind the drive. */
  volume: string;
  /** Never extend past this (qcow2 fully allocated, or the admin's maxSize). */
  capBytes: number;
  policy: PolicySettings;
  /**
   * A layer under a disk's active one (libvirt's `vda[2]`). Only a block job
   * writes it (an administrator's `virsh blockcommit` merging into it), so
   * it is armed but never extended before a write was seen: what its image
   * holds already is not a guest writing.
   */
  backingLayer?: boolean;
  /**
   * The drive this one is the copy target of (`virsh blockcopy`): QEMU
   * writes it as the job copies and, once the copy is ready, with every
   * guest write. libvirt arms no threshold on a copy's target, so it is
   * never armed: it is kept at least as large as the drive it copies, each
   * time that one grows (as oVirt extends a replica with its drive).
   */
  replicaOf?: string;
}

/** Two policies that decide alike (every setting equal; they are flat records of numbers and flags). */
export function samePolicy(a: PolicySettings, b: PolicySettings): boolean {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)] as Array<keyof PolicySettings>);
  return [...keys].every((key) => a[key] === b[key]);
}

export type DrivePhase = 'ok' | 'extending' | 'paused-enospc' | 'error';

export interface DriveStatus {
  drive: string;
  volume: string;
  phase: DrivePhase;
  highWaterBytes: number;
  volumeBytes: number;
  /** The armed write threshold; null when none is armed. */
  thresholdBytes: number | null;
  capBytes: number;
  extensions: number;
  lastExtensionMs: number | null;
  writeBytesPerSecond: number;
  error: { code: string; message: string } | null;
}

export type Decision =
  | { kind: 'extend'; targetBytes: number }
  | { kind: 'arm'; thresholdBytes: number }
  | { kind: 'at-cap' }
  | { kind: 'wait' };

export class DriveState {
  policy: ExtensionPolicy;
  volumeBytes: number;
  highWater = 0;
  /** For a copy target: the size of the drive it copies, which it must reach. */
  private replicaTargetBytes = 0;
  /** Something wrote the drive since it is watched (a threshold fired, a write found no space): what a backing layer waits for. */
  private written = false;
  armedThreshold: number | undefined;
  /** A threshold being set right now (the VM may take long to answer: libvirt holds it back during a migration). */
  private arming: number | undefined;
  extending = false;
  /** A write failed for lack of space and no extension has completed since. */
  noSpace = false;
  /**
   * This host's view grew by a refresh, not by an extension of its own (the
   * source of a live migration extended). Until a write proves the new size
   * in use, a write that finds no space may have met the old size, so one
   * resume is tried before the SPM is asked; a second pause goes to the SPM.
   */
  grewUnseen = false;
  extensions = 0;
  lastExtensionMs: number | undefined;
  private extensionStartedAt = 0;
  private failure: { code: string; message: string; retryAt: number } | undefined;

  constructor(public config: DriveConfig, volumeBytes: number) {
    this.policy = new ExtensionPolicy(config.policy);
    this.volumeBytes = volumeBytes;
  }

  get name(): string {
    return this.config.drive;
  }

  /**
   * The drive's cap or policy changed under it (the image grew, the domain's
   * metadata changed): decisions from now on follow the new configuration,
   * while what the drive has seen (high water, size, an extension under way)
   * stays. A refusal at the old cap is retried at once when the cap grew.
   */
  reconfigure(config: DriveConfig): void {
    const capGrew = config.capBytes > this.config.capBytes;
    const policyChanged = !samePolicy(config.policy, this.config.policy);
    this.config = config;
    if (policyChanged) this.policy = new ExtensionPolicy(config.policy);
    if (capGrew && this.failure) this.failure = { ...this.failure, retryAt: 0 };
    // The threshold follows the policy: armed again at the next decision.
    if (policyChanged) this.armedThreshold = undefined;
  }

  observeHighWater(highWater: number, now: number): void {
    if (highWater > this.highWater) this.highWater = highWater;
    this.policy.observeHighWater(highWater, now);
  }

  /** QEMU disarms a threshold when it fires. */
  thresholdFired(highWaterAtLeast: number, now: number): void {
    this.armedThreshold = undefined;
    this.written = true;
    this.grewUnseen = false;
    this.observeHighWater(highWaterAtLeast, now);
  }

  /** A copy target learns how large the drive it copies is now; the next decision extends it to that. */
  followSource(sourceBytes: number): boolean {
    if (sourceBytes <= this.replicaTargetBytes) return false;
    this.replicaTargetBytes = sourceBytes;
    return sourceBytes > this.volumeBytes;
  }

  /**
   * Nothing can be asked about the drive's writes for a while (the
   * destination of a post-copy migration): it counts as written up to the
   * end of its volume, so the next decision gives it its free target back.
   * Not a measured write: the write-rate estimate does not see it.
   */
  /** The layer the guest writes: neither a backing layer nor a block copy's target. */
  get isActiveLayer(): boolean {
    return !this.config.backingLayer && this.config.replicaOf === undefined;
  }

  assumeWrittenToEnd(): void {
    this.highWater = Math.max(this.highWater, this.volumeBytes);
  }

  markNoSpace(): void {
    this.noSpace = true;
    this.written = true;
  }

  /** After a reconnect nothing QEMU held for us can be trusted. */
  forgetThreshold(): void {
    this.armedThreshold = undefined;
  }

  decide(now: number): Decision {
    if (this.extending) return { kind: 'wait' };
    if (this.failure && now < this.failure.retryAt) return { kind: 'wait' };
    if (this.config.replicaOf !== undefined && !this.noSpace) {
      const targetBytes = Math.min(alignUp(this.replicaTargetBytes, this.config.policy.extentBytes), this.config.capBytes);
      return targetBytes > this.volumeBytes ? { kind: 'extend', targetBytes } : { kind: 'wait' };
    }
    if (this.config.backingLayer && !this.written) {
      // A threshold of 0 is none to QEMU: a layer smaller than the free target is armed at its first byte.
      const thresholdBytes = Math.max(1, this.policy.threshold(this.volumeBytes));
      return this.armedThreshold !== thresholdBytes && this.arming === undefined ? { kind: 'arm', thresholdBytes } : { kind: 'wait' };
    }
    const wantsSpace = this.noSpace || this.policy.needsExtension(this.volumeBytes, this.highWater);
    if (wantsSpace) {
      const targetBytes = this.policy.nextSize(this.volumeBytes, this.highWater, this.config.capBytes);
      // Fully provisioned: harmless while writes succeed, fatal to a write that already failed.
      if (targetBytes <= this.volumeBytes) return this.noSpace ? { kind: 'at-cap' } : { kind: 'wait' };
      return { kind: 'extend', targetBytes };
    }
    const thresholdBytes = this.policy.threshold(this.volumeBytes);
    // One change at a time: the one under way is followed by this decision again.
    if (this.armedThreshold !== thresholdBytes && this.arming === undefined) return { kind: 'arm', thresholdBytes };
    return { kind: 'wait' };
  }

  extensionStarted(now: number): void {
    this.extending = true;
    this.extensionStartedAt = now;
  }

  /** `visibleBytes` is the size this host sees after the refresh. */
  extensionSucceeded(visibleBytes: number, now: number): number {
    const latency = now - this.extensionStartedAt;
    this.extending = false;
    this.failure = undefined;
    this.volumeBytes = Math.max(this.volumeBytes, visibleBytes);
    this.noSpace = false;
    this.grewUnseen = false;
    this.extensions += 1;
    this.lastExtensionMs = latency;
    this.policy.observeExtensionLatency(latency);
    // The old threshold is below the new one; it must be raised.
    this.armedThreshold = undefined;
    return latency;
  }

  /** This host now sees a larger volume than it knew (another host extended it); true when it grew. */
  sawVolumeBytes(visibleBytes: number): boolean {
    if (visibleBytes <= this.volumeBytes) return false;
    this.volumeBytes = visibleBytes;
    this.armedThreshold = undefined;
    this.grewUnseen = true;
    return true;
  }

  /** Whether the view grew unseen; asking uses it up. */
  takeGrewUnseen(): boolean {
    const grew = this.grewUnseen;
    this.grewUnseen = false;
    return grew;
  }

  /** A write failed for lack of space, but a refresh showed the space was already there. */
  /**
   * The volume was made smaller under a layer that is not written (an inner
   * layer reduced to its image's end, once the job that wrote it ended):
   * its size is what the storage says now, it waits for the next job's
   * first write again, and its threshold is armed again below the new end.
   */
  shrunkTo(volumeBytes: number): void {
    this.volumeBytes = volumeBytes;
    this.highWater = 0;
    this.written = false;
    this.armedThreshold = undefined;
  }

  spaceFoundByRefresh(visibleBytes: number): void {
    this.extending = false;
    this.failure = undefined;
    this.noSpace = false;
    this.volumeBytes = Math.max(this.volumeBytes, visibleBytes);
    this.grewUnseen = false;
    this.armedThreshold = undefined;
  }

  extensionFailed(error: unknown, now: number, retryDelayMs: number): void {
    this.extending = false;
    this.failure = { code: errorCode(error), message: errorMessage(error), retryAt: now + retryDelayMs };
  }

  /** Whether a threshold change was asked for and has not been answered (libvirt holds them during a migration job). */
  get armingPending(): boolean {
    return this.arming !== undefined;
  }

  armingStarted(thresholdBytes: number): void {
    this.arming = thresholdBytes;
  }

  /** `armed`: the threshold is set in the VM; otherwise setting it failed and nothing is armed for sure. */
  armingEnded(thresholdBytes: number, armed: boolean): void {
    this.arming = undefined;
    if (armed) this.armedThreshold = thresholdBytes;
  }

  /** When a failed extension is due again; undefined when none failed. */
  get retryAt(): number | undefined {
    return this.failure?.retryAt;
  }

  get failed(): boolean {
    return this.failure !== undefined;
  }

  status(): DriveStatus {
    const phase: DrivePhase = this.extending ? 'extending' : this.failure ? 'error' : this.noSpace ? 'paused-enospc' : 'ok';
    return {
      drive: this.config.drive,
      volume: this.config.volume,
      phase,
      highWaterBytes: this.highWater,
      volumeBytes: this.volumeBytes,
      thresholdBytes: this.armedThreshold ?? null,
      capBytes: this.config.capBytes,
      extensions: this.extensions,
      lastExtensionMs: this.lastExtensionMs ?? null,
      writeBytesPerSecond: Math.round(this.policy.writeRate()),
      error: this.failure ? { code: this.failure.code, message: this.failure.message } : null,
    };
  }
}
