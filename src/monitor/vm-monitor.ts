import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { errorCode, errorMessage } from '../errors.js';
import { sleep, type Clock, type TimerHandle } from '../util/clock.js';
import { DriveState, type DriveConfig, type DriveStatus } from './drive-state.js';
import { CapReachedError, ExtensionTimeoutError } from './errors.js';
import { ARRIVED_PAUSED_MESSAGE, MIGRATED_AWAY_MESSAGE, migrationPhase, type MigrationPhase } from './migration.js';
import { IncomingMigration } from './incoming-migration.js';
import { CapFollower } from './cap-follower.js';
import { NoSpacePause, RESTORED_PAUSED_MESSAGE } from './no-space-pause.js';
import { OutgoingMigrationGate } from './outgoing-migration.js';
import type { DriveCapacity, Extender, MigrationPeers, MonitorInput, VmControl } from './ports.js';

/**
 * Watches every thin drive of one VM: arms write thresholds, extends volumes
 * before they fill, and resumes the VM when it paused for lack of space and
 * the space is there. Never resumes a VM that anything else paused.
 */

/**
 * The safety poll catches what events did not bring (docs/monitor.md): a
 * threshold event is lost only across a reconnect, after which the monitor
 * resynchronises at once. VDSM checks every 2 s because libvirt's threshold
 * events once could not be trusted; here 5 s keeps 200 idle VMs under 1 % of
 * a core, and at oVirt's 2 GiB free target still covers a guest writing up
 * to 400 MiB/s past a lost event.
 */
export const DEFAULT_POLL_INTERVAL_MS = 5_000;
/**
 * While a threshold change is held back (libvirt defers it for a whole
 * outgoing migration), polls are what extend the drive: they come this often.
 */
export const HELD_BACK_POLL_MS = 1_000;
/** A failed extension is retried after this; refusals (VG full, cap) too, since an admin may fix them. */
export const DEFAULT_RETRY_DELAY_MS = 5_000;
/**
 * For a drive whose write found no space the guest is paused: each second
 * counts once an admin adds space (a domain-full chaos cycle paused guests up
 * to 10 s when retries came every 5 s and at polls only). One request a
 * second per paused drive is little for the SPM (figure 6: over 1,000 a second).
 */
export const NO_SPACE_RETRY_DELAY_MS = 1_000;
/** VDSM gives up waiting for one extension after 2 x its mailbox resend time; mailbox resends inside. */
export const DEFAULT_EXTENSION_TIMEOUT_MS = 60_000;

export interface VmMonitorOptions {
  vm: string;
  /** `grewUnseen`: the refresh when watching began showed more than this host saw before (see DriveState.grewUnseen). */
  drives: ReadonlyArray<{ config: DriveConfig; volumeBytes: number; grewUnseen?: boolean }>;
  clock: Clock;
  extender: Extender;
  control: VmControl;
  logger: Logger;
  pollIntervalMs?: number;
  retryDelayMs?: number;
  extensionTimeoutMs?: number;
  /** How often volumes are refreshed while the VM migrates in (src/monitor/migration.ts). */
  incomingRefreshMs?: number;
  /** The other host of a live migration; without it (no shared mailbox) nothing migrates between hosts. */
  peers?: MigrationPeers;
  /** Where a drive near its cap learns whether its image grew; without it the cap is the one configured. */
  capacity?: DriveCapacity;
}


export interface VmStatus {
  vm: string;
  /** True while the VM is paused because a write found no space, and tideline will resume it. */
  pausedForNoSpace: boolean;
  pauses: number;
  pausedMsTotal: number;
  lastResumeMs: number | null;
  /** 'incoming' while the VM migrates in to this host; 'left' once it migrated away. */
  migration: MigrationPhase | null;
  /** From the VM running here after a migration to every threshold armed. */
  lastArrivalMs: number | null;
  drives: DriveStatus[];
}

export interface MonitorEvents {
  extended: [{ vm: string; drive: string; volume: string; fromBytes: number; toBytes: number; latencyMs: number }];
  'extension-failed': [{ vm: string; drive: string; volume: string; code: string; message: string }];
  paused: [{ vm: string; drives: string[] }];
  resumed: [{ vm: string; pausedMs: number }];
  /** The VM runs here after a live migration, its volumes refreshed and thresholds armed. */
  arrived: [{ vm: string; armedMs: number }];
  /** The VM migrated away; this monitor has stopped. */
  left: [{ vm: string }];
  /** No destination saw a volume's new space in time: the outgoing migration was cancelled. */
  'migration-cancelled': [{ vm: string; drive: string; volume: string }];
  changed: [];
}

interface DriveRuntime {
  state: DriveState;
  stepping: boolean;
  again: boolean;
  /** No longer part of the VM (unplugged, or its layer replaced): work under way ends without touching it again. */
  removed?: boolean;
  /** Setting the write threshold, when under way. */
  arming?: Promise<void>;
}

export class VmMonitor extends EventEmitter<MonitorEvents> {
  readonly vm: string;
  private readonly drives = new Map<string, DriveRuntime>();
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly pollIntervalMs: number;
  private readonly retryDelayMs: number;
  private readonly extensionTimeoutMs: number;
  private pollTimer: TimerHandle | undefined;
  private polling = false;
  private stopped = true;
  private readonly pause: NoSpacePause;
  private lastArrivalMs: number | undefined;
  /** The destination side of a live migration. */
  private readonly incoming: IncomingMigration;
  /** Arrived by migration and not yet seen running here: an I/O error pause then may be the source's (takeOverArrivedPause). */
  private arrivedPaused = false;
  private readonly caps: CapFollower;
  /** The source side of a live migration: new space waits for the destination. */
  private readonly outgoing: OutgoingMigrationGate;

  constructor(private readonly options: VmMonitorOptions) {
    super();
    this.vm = options.vm;
    this.clock = options.clock;
    this.logger = options.logger.child({ vm: options.vm });
    this.pollIntervalMs = options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
    this.retryDelayMs = options.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS;
    this.extensionTimeoutMs = options.extensionTimeoutMs ?? DEFAULT_EXTENSION_TIMEOUT_MS;
    this.caps = new CapFollower(options.capacity, this.logger, () => this.emit('changed'));
    this.pause = new NoSpacePause({
      clock: options.clock,
      control: options.control,
      logger: this.logger,
      paused: (drives) => this.emit('paused', { vm: this.vm, drives }),
      resumed: (pausedMs) => this.emit('resumed', { vm: this.vm, pausedMs }),
      changed: () => this.emit('changed'),
    });
    this.incoming = new IncomingMigration({
      drives: () => [...this.drives.values()].map((runtime) => runtime.state),
      extender: options.extender,
      ...(options.peers ? { peers: options.peers } : {}),
      logger: this.logger,
      changed: () => this.emit('changed'),
      ...(options.incomingRefreshMs ? { refreshMs: options.incomingRefreshMs } : {}),
      loop: {
        step: (drive) => {
          const runtime = this.runtimeOf(drive);
          if (runtime) void this.step(runtime);
        },
        stepAll: () => this.stepAll(),
        armAll: () => this.armAll(),
        takeOverPauseOfUnknownWrites: (message) => this.takeOverPauseOfUnknownWrites(message),
        pausedForNoSpace: () => this.pause.active,
        resumeWhenReady: () => this.maybeResume(),
        runState: () => options.control.runState(),
        now: () => this.clock.now(),
        arrived: (armedMs) => {
          this.lastArrivalMs = armedMs;
          this.emit('arrived', { vm: this.vm, armedMs });
          this.emit('changed');
        },
      },
    });
    this.outgoing = new OutgoingMigrationGate({
      vm: options.vm,
      control: options.control,
      ...(options.peers ? { peers: options.peers } : {}),
      clock: options.clock,
      logger: this.logger,
      stopped: () => this.stopped,
      cancelled: (drive, volume) => this.emit('migration-cancelled', { vm: this.vm, drive, volume }),
    });
    for (const { config, volumeBytes, grewUnseen } of options.drives) {
      const state = new DriveState(config, volumeBytes);
      if (grewUnseen) state.grewUnseen = true;
      this.drives.set(config.drive, { state, stepping: false, again: false });
    }
  }

  /** First synchronisation (thresholds, a pause that happened before we came), then the safety poll. */
  async start(): Promise<void> {
    this.stopped = false;
    await this.poll();
  }

  stop(): void {
    this.stopped = true;
    this.pollTimer?.cancel();
    this.pollTimer = undefined;
    // A migration in that ends here without the VM running (failed, or QEMU gone): the source waits for nothing from us.
    if (this.incoming.announcing) void this.incoming.withdraw();
  }

  handle(input: MonitorInput): void {
    const now = this.clock.now();
    switch (input.type) {
      case 'threshold': {
        const runtime = this.drives.get(input.drive);
        if (!runtime) return;
        runtime.state.thresholdFired(input.highWaterAtLeast, now);
        this.logger.info({ drive: input.drive, volume: runtime.state.config.volume, highWater: input.highWaterAtLeast }, 'write threshold crossed');
        void this.step(runtime);
        return;
      }
      case 'io-error': {
        const runtime = this.drives.get(input.drive);
        if (!runtime) return;
        if (!input.noSpace) {
          // EIO and friends are not ours to fix; resuming would only repeat the failure.
          this.logger.error({ drive: input.drive, action: input.action, reason: input.reason }, 'I/O error that is not lack of space; leaving the VM to its administrator');
          return;
        }
        if (input.action !== 'stop') {
          this.logger.warn({ drive: input.drive, action: input.action }, 'guest saw ENOSPC: the drive does not pause on write errors (set werror=stop / error_policy=stop)');
        }
        runtime.state.markNoSpace();
        if (input.action === 'stop') this.pause.noted([input.drive]);
        void this.step(runtime);
        return;
      }
      case 'resumed':
        if (this.incoming.incoming) void this.incoming.resumed(now);
        else this.pause.resumedByOthers();
        return;
      case 'migrating-in':
        if (!this.incoming.enter()) return;
        // Announce now: the source's first extension during the migration waits for it.
        this.pollTimer?.cancel();
        void this.poll();
        return;
      case 'restored-paused-for-space':
        // What the guest wrote before the save is unknown here.
        this.takeOverPauseOfUnknownWrites(RESTORED_PAUSED_MESSAGE);
        void this.stepAll();
        return;
      case 'stopped':
        return;
      case 'reconnected':
        for (const runtime of this.drives.values()) runtime.state.forgetThreshold();
        void this.poll();
        return;
    }
  }

  status(): VmStatus {
    return {
      vm: this.vm,
      pausedForNoSpace: this.pause.active,
      pauses: this.pause.pauses,
      pausedMsTotal: this.pause.pausedMs(),
      lastResumeMs: this.pause.lastResumeMs ?? null,
      migration: this.incoming.phase ?? null,
      lastArrivalMs: this.lastArrivalMs ?? null,
      drives: [...this.drives.values()].map((runtime) => runtime.state.status()),
    };
  }

  get pausedForNoSpace(): boolean {
    return this.pause.active;
  }

  /** The drives watched now, by name in the VM. */
  driveConfigs(): DriveConfig[] {
    return [...this.drives.values()].map((runtime) => runtime.state.config);
  }

  /**
   * A drive that became part of the VM while it runs (hot-plug, a new top
   * layer): armed at once, while the other drives go on undisturbed.
   */
  addDrive(config: DriveConfig, volumeBytes: number, grewUnseen = false): void {
    if (this.drives.has(config.drive)) throw new Error(`drive ${config.drive} of ${this.vm} is watched already`);
    const state = new DriveState(config, volumeBytes);
    if (grewUnseen) state.grewUnseen = true;
    const runtime: DriveRuntime = { state, stepping: false, again: false };
    this.drives.set(config.drive, runtime);
    this.emit('changed');
    if (this.stopped) return;
    if (this.incoming.incoming) {
      void this.incoming.refreshViews(false).catch((error: unknown) => this.logger.warn({ drive: config.drive, err: errorMessage(error) }, 'could not refresh a drive added while the VM migrates in'));
      return;
    }
    if (config.replicaOf !== undefined) {
      this.followReplicas();
      return;
    }
    void this.refreshHighWater(state)
      .catch(() => undefined)
      .then(() => this.step(runtime));
  }

  /** A drive no longer part of the VM (unplugged): never extended or waited for again; an extension under way completes harmlessly (sizes are absolute). */
  removeDrive(drive: string): void {
    const runtime = this.drives.get(drive);
    if (!runtime) return;
    runtime.removed = true;
    this.drives.delete(drive);
    this.emit('changed');
    // A pause that waited only for this drive is no longer waiting for anything.
    void this.maybeResume();
  }

  /** Every copy target (`virsh blockcopy`) follows the size of the drive it copies; one that must grow is extended now. */
  private followReplicas(): void {
    for (const runtime of this.drives.values()) {
      const source = runtime.state.config.replicaOf === undefined ? undefined : this.drives.get(runtime.state.config.replicaOf);
      if (source && runtime.state.followSource(source.state.volumeBytes) && !this.stopped) void this.step(runtime);
    }
  }

  /**
   * A watched backing layer's volume was reduced (`tideline volume reduce`,
   * a commit giving space back): armed again below its new end, so a later
   * block job into it is still seen before it runs out.
   */
  volumeReduced(volume: string, volumeBytes: number): void {
    for (const runtime of this.drives.values()) {
      if (runtime.state.config.volume !== volume || !runtime.state.config.backingLayer) continue;
      runtime.state.shrunkTo(volumeBytes);
      this.emit('changed');
      if (!this.stopped && !this.incoming.incoming) void this.step(runtime);
    }
  }

  /** A watched drive's cap or policy changed: its next decisions follow it; what it has seen and does stays. */
  reconfigureDrive(config: DriveConfig): void {
    const runtime = this.drives.get(config.drive);
    if (!runtime) return;
    runtime.state.reconfigure(config);
    this.emit('changed');
    if (!this.stopped && !this.incoming.incoming) void this.step(runtime);
  }

  /** A failed extension is retried when it is due, not at the first poll after (a poll in progress schedules its successor by the same rule). */
  private pollWhenDue(delayMs: number): void {
    this.clock.setTimeout(() => {
      if (this.stopped || this.polling) return;
      this.pollTimer?.cancel();
      void this.poll();
    }, delayMs);
  }

  /** One round of the safety net: high-water marks, a missed pause, thresholds, retries. */
  async poll(): Promise<void> {
    if (this.stopped || this.polling) return;
    this.polling = true;
    this.pollTimer?.cancel();
    let nextPollMs = this.pollIntervalMs;
    try {
      const { control } = this.options;
      if (this.incoming.incoming) {
        // Told that the VM migrates in (the hook, an event): the views are refreshed and announced whatever
        // libvirt answers now. It answers least in this window, and the source's extensions wait for them.
        await this.incoming.refreshViews(false);
      }
      // Both questions at once (one wake-up for two replies) when the VM runs here; a VM migrating in answers no block query.
      const asked = this.incoming.phase === undefined ? control.highWaterMarks() : undefined;
      asked?.catch(() => undefined);
      const runState = await control.runState();
      if (migrationPhase(runState) === 'left') {
        this.leave();
        return;
      }
      const verdict = await this.incoming.polled(runState);
      if (verdict === 'wait') return;
      if (verdict === 'arrived') this.arrivedPaused = runState === 'io-error';
      const now = this.clock.now();
      const marks = await (asked ?? control.highWaterMarks());
      for (const [drive, highWater] of marks) this.drives.get(drive)?.state.observeHighWater(highWater, now);
      await this.caps.followNearCap([...this.drives.values()].map((runtime) => runtime.state));
      this.followReplicas();
      if (runState === 'io-error') {
        const noSpace = [...(await control.noSpaceDrives())].filter((drive) => this.drives.has(drive));
        for (const drive of noSpace) this.drives.get(drive)!.state.markNoSpace();
        if (noSpace.length > 0) this.pause.noted(noSpace);
        else if (this.arrivedPaused && !this.pause.active) this.takeOverUnexplainedPause(ARRIVED_PAUSED_MESSAGE);
      }
      await this.stepAll();
      await this.maybeResume();
    } catch (error) {
      this.logger.warn({ err: errorMessage(error), code: errorCode(error) }, 'drive poll failed; retrying at the next poll');
    } finally {
      this.polling = false;
      // A migration in keeps its cadence whatever this poll met: a failed question must not leave the source waiting for a view.
      if (this.incoming.announcing) nextPollMs = Math.min(nextPollMs, this.incoming.refreshMs);
      if ([...this.drives.values()].some((runtime) => runtime.state.armingPending)) nextPollMs = Math.min(nextPollMs, HELD_BACK_POLL_MS);
      const now = this.clock.now();
      for (const { state } of this.drives.values()) {
        if (state.retryAt !== undefined && state.retryAt > now) nextPollMs = Math.min(nextPollMs, state.retryAt - now);
      }
      if (!this.stopped) this.pollTimer = this.clock.setTimeout(() => void this.poll(), nextPollMs);
    }
  }

  /**
   * The VM arrived by live migration paused for an I/O error that no drive
   * reports: the source paused it (a write found no space there), and QEMU
   * carries the run state across a migration but not a drive's error status
   * (plain QEMU; libvirt resumes such a VM itself once it arrives). Left
   * alone it would stay paused for good. Every drive near its end counts as
   * out of space: a refresh, or an extension, then a resume. A write that
   * fails for another reason pauses it again, with its status shown, and is
   * not ours.
   */
  private takeOverUnexplainedPause(message: string): void {
    this.arrivedPaused = false;
    const nearEnd = [...this.drives.values()].map(({ state }) => state).filter((state) => state.policy.needsExtension(state.volumeBytes, state.highWater));
    for (const state of nearEnd) state.markNoSpace();
    this.logger.warn({ drives: nearEnd.map((state) => state.name) }, message);
    this.pause.noted(nearEnd.map((state) => state.name));
  }
  /** A pause after writes nobody saw (a restore, a post-copy): every active layer counts as written to its end first. */
  private takeOverPauseOfUnknownWrites(message: string): void {
    for (const { state } of this.drives.values()) if (state.isActiveLayer) state.assumeWrittenToEnd();
    this.takeOverUnexplainedPause(message);
  }


  private async armAll(): Promise<void> {
    for (const runtime of this.drives.values()) runtime.state.forgetThreshold();
    await this.stepAll();
    await Promise.all([...this.drives.values()].map((runtime) => runtime.arming));
  }

  private async stepAll(): Promise<void> {
    await Promise.all([...this.drives.values()].map((runtime) => this.step(runtime)));
  }

  private leave(): void {
    this.incoming.left();
    this.logger.info(MIGRATED_AWAY_MESSAGE);
    this.stop();
    this.emit('left', { vm: this.vm });
    this.emit('changed');
  }

  /** The drive's runtime while it is still part of the VM (a removed drive's work ends quietly). */
  private runtimeOf(drive: DriveState): DriveRuntime | undefined {
    const runtime = this.drives.get(drive.name);
    return runtime?.state === drive ? runtime : undefined;
  }

  private markAgain(drive: DriveState): void {
    const runtime = this.runtimeOf(drive);
    if (runtime) runtime.again = true;
  }

  /** Runs decisions for one drive until it has nothing more to do; concurrent callers coalesce. */
  private async step(runtime: DriveRuntime): Promise<void> {
    if (runtime.stepping) {
      runtime.again = true;
      return;
    }
    runtime.stepping = true;
    try {
      do {
        runtime.again = false;
        if (runtime.removed) break;
        await this.stepOnce(runtime.state);
      } while (runtime.again && !this.stopped && !runtime.removed);
    } finally {
      runtime.stepping = false;
    }
    await this.maybeResume();
  }

  private async stepOnce(drive: DriveState): Promise<void> {
    if (this.stopped) return;
    const decision = drive.decide(this.clock.now());
    const { volume } = drive.config;
    switch (decision.kind) {
      case 'wait':
        return;
      case 'at-cap': {
        // A write found no space at the cap: the image may have grown since the last look.
        if (await this.caps.grew(drive)) {
          this.markAgain(drive);
          return;
        }
        const error = new CapReachedError(this.vm, drive.name, volume, drive.config.capBytes);
        if (!drive.failed) this.logger.error({ drive: drive.name, volume, cap: drive.config.capBytes }, error.message);
        drive.extensionFailed(error, this.clock.now(), this.retryDelayMs);
        this.emit('extension-failed', { vm: this.vm, drive: drive.name, volume, code: error.code, message: error.message });
        this.emit('changed');
        return;
      }
      case 'arm':
        // A VM still migrating in gets its thresholds when it arrives (arrive()); libvirt would hold them back meanwhile.
        if (this.incoming.incoming) return;
        drive.armingStarted(decision.thresholdBytes);
        this.runtimeOf(drive)!.arming = this.arm(drive, decision.thresholdBytes);
        return;
      case 'extend':
        await this.extend(drive, decision.targetBytes);
        return;
    }
  }

  /**
   * Off the drive's decision loop: libvirt holds a threshold change back for
   * as long as a migration job runs (measured: the whole outgoing migration),
   * and meanwhile the drive must still extend on what the safety poll sees.
   */
  private async arm(drive: DriveState, thresholdBytes: number): Promise<void> {
    // Not answered within a second: held back, so polls take over from now (each one schedules the next a second later).
    const heldBack = this.clock.setTimeout(() => {
      if (this.stopped || this.polling) return;
      this.pollTimer?.cancel();
      void this.poll();
    }, HELD_BACK_POLL_MS);
    try {
      await this.options.control.setWriteThreshold(drive.name, thresholdBytes);
      heldBack.cancel();
      drive.armingEnded(thresholdBytes, true);
      this.logger.debug({ drive: drive.name, volume: drive.config.volume, threshold: thresholdBytes }, 'write threshold armed');
    } catch (error) {
      // Not retried at once: the next poll decides again.
      heldBack.cancel();
      drive.armingEnded(thresholdBytes, false);
      this.logger.warn({ drive: drive.name, err: errorMessage(error) }, 'could not arm the write threshold; the safety poll covers the drive');
      this.emit('changed');
      return;
    }
    this.emit('changed');
    // A write may have crossed the new threshold before it was armed, and the volume may have grown meanwhile.
    const runtime = this.runtimeOf(drive);
    if (!this.stopped && runtime) void this.refreshHighWater(drive).catch(() => undefined).then(() => this.step(runtime));
  }

  private async extend(drive: DriveState, targetBytes: number): Promise<void> {
    const { volume } = drive.config;
    const fromBytes = drive.volumeBytes;
    drive.extensionStarted(this.clock.now());
    this.emit('changed');
    try {
      // A write that found no space may have met only this host's stale view: another host (the source of a
      // live migration) may have extended the volume already. Then a refresh is all it takes, and the SPM is not asked.
      if (drive.noSpace && (await this.refreshFoundSpace(drive))) return;
      if (drive.config.backingLayer && (await this.layerGrewMeanwhile(drive))) return;
      this.logger.info({ drive: drive.name, volume, fromBytes, targetBytes, highWater: drive.highWater }, 'extending volume');
      const storageBytes = await this.withTimeout(this.options.extender.extend(volume, targetBytes), volume);
      await this.outgoing.beforeUsingNewSpace(drive.name, drive.config.volume, storageBytes);
      const visible = await this.withTimeout(this.options.extender.refresh(volume), volume);
      const latencyMs = drive.extensionSucceeded(visible, this.clock.now());
      this.logger.info({ drive: drive.name, volume, fromBytes, toBytes: drive.volumeBytes, latencyMs }, 'volume extended');
      this.emit('extended', { vm: this.vm, drive: drive.name, volume, fromBytes, toBytes: drive.volumeBytes, latencyMs });
      this.markAgain(drive);
      this.followReplicas();
    } catch (error) {
      const retryInMs = drive.noSpace ? Math.min(NO_SPACE_RETRY_DELAY_MS, this.retryDelayMs) : this.retryDelayMs;
      drive.extensionFailed(error, this.clock.now(), retryInMs);
      this.pollWhenDue(retryInMs);
      const code = errorCode(error);
      const message = errorMessage(error);
      this.logger.error({ drive: drive.name, volume, targetBytes, code, err: message, retryInMs }, 'extension failed');
      this.emit('extension-failed', { vm: this.vm, drive: drive.name, volume, code, message });
    }
    this.emit('changed');
  }

  private async refreshFoundSpace(drive: DriveState): Promise<boolean> {
    // On the source of a migration a refresh must wait for the destination: the extension path does that.
    if (await this.outgoing.holdsNewSpace()) return false;
    const fromBytes = drive.volumeBytes;
    const visible = await this.withTimeout(this.options.extender.refresh(drive.config.volume), drive.config.volume);
    if (visible <= fromBytes && !drive.takeGrewUnseen()) return false;
    drive.spaceFoundByRefresh(visible);
    this.logger.warn({ drive: drive.name, volume: drive.config.volume, fromBytes, toBytes: Math.max(fromBytes, visible) }, 'write found no space only in this host\'s stale view of the volume; refreshed, resuming without asking the SPM');
    this.emit('changed');
    // Resume before anything else: the policy may still want an extension (the guest is near the end), which can run while the guest writes.
    await this.maybeResume();
    this.markAgain(drive);
    return true;
  }

  /**
   * A backing layer's size is not followed between block jobs, and whoever
   * runs the job may have given it room first (`tideline snapshot commit`
   * extends the base by what the merge needs): this host's view is
   * refreshed, and the SPM asked only if that is still not enough.
   */
  private async layerGrewMeanwhile(drive: DriveState): Promise<boolean> {
    const visible = await this.withTimeout(this.options.extender.refresh(drive.config.volume), drive.config.volume);
    if (visible <= drive.volumeBytes) return false;
    drive.spaceFoundByRefresh(visible);
    this.logger.info({ drive: drive.name, volume: drive.config.volume, volumeBytes: visible }, 'backing layer was given room before its block job; deciding again on its size now');
    this.emit('changed');
    this.markAgain(drive);
    return true;
  }

  private async refreshHighWater(drive: DriveState): Promise<void> {
    const marks = await this.options.control.highWaterMarks();
    const highWater = marks.get(drive.name);
    if (highWater === undefined) return;
    drive.observeHighWater(highWater, this.clock.now());
    if (drive.policy.needsExtension(drive.volumeBytes, drive.highWater)) this.markAgain(drive);
  }

  private async maybeResume(): Promise<void> {
    if (!this.stopped) await this.pause.resumeWhenReady([...this.drives.values()].map((runtime) => runtime.state));
  }

  private withTimeout<T>(promise: Promise<T>, volume: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = this.clock.setTimeout(() => reject(new ExtensionTimeoutError(volume, this.extensionTimeoutMs)), this.extensionTimeoutMs);
      promise.then(
        (value) => {
          timer.cancel();
          resolve(value);
        },
        (error: unknown) => {
          timer.cancel();
          reject(error);
        },
      );
    });
  }
}

/** Re-emits a monitor's events from another emitter (an attachment, the libvirt agent), so metrics and status see one source. */
export function forwardMonitorEvents(monitor: VmMonitor, target: EventEmitter<MonitorEvents>): void {
  for (const name of ['extended', 'extension-failed', 'paused', 'resumed', 'arrived', 'left', 'migration-cancelled', 'changed'] as const) {
    monitor.on(name, (...args: unknown[]) => (target.emit as (event: string, ...rest: unknown[]) => boolean)(name, ...args));
  }
}
