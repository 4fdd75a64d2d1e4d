import { EventEmitter } from 'node:events';
import { errorMessage } from '../errors.js';
import type { HookEvent } from '../agent/spool-protocol.js';
import type { DriveConfig } from '../monitor/drive-state.js';
import { MIGRATED_AWAY_MESSAGE } from '../monitor/migration.js';
import { forwardMonitorEvents, VmMonitor, type MonitorEvents, type VmStatus } from '../monitor/vm-monitor.js';
import { parseDomainXml } from './domain-xml.js';
import type { LibvirtEvent } from './events.js';
import { LibvirtEventStream, type LibvirtEventSource } from './event-stream.js';
import { RemoteEventStream } from './remote/remote-event-stream.js';
import { LibvirtVm } from './libvirt-vm.js';
import type { Virsh } from './virsh.js';
import type { WatchOptions } from '../agent/watch-options.js';
import { refreshAtAttach } from '../agent/refresh-at-attach.js';
import { chainVolumes, completedBlockJob } from './block-jobs.js';
import { isPauseMark, PAUSE_NAMESPACE, PauseMarker } from './pause-marker.js';
import { copyTargetName, deriveThinDrives, imageCapBytes, isCopyTargetName, sameDriveSettings, type ThinDrive } from './thin-drives.js';
import type { TimerHandle } from '../util/clock.js';
import { readQcow2Header } from '../qcow2/header.js';
import { VirtualShrinkRefusedError } from '../spm/volume-lifecycle.js';

/**
 * The agent's libvirt side: finds running domains and their thin drives,
 * runs a VmMonitor for each domain, feeds it libvirt's events, and follows
 * domains as they start and stop. It reconciles rather than remembers: on
 * anything libvirt says about a domain's devices or chain (a device added or
 * removed, a block job, new metadata, a restore, an arrival) it reads the
 * domain's live XML and its images again and changes only what differs, so
 * an extension under way on an unchanged drive is never disturbed. Events
 * say when to look; a slow periodic reconcile catches one that was missed.
 * After the event stream comes back (libvirtd restart) it rescans
 * everything: thresholds are re-armed and a domain paused for ENOSPC
 * meanwhile is found by the monitor's first poll and resumed.
 */
export interface LibvirtAgentOptions extends WatchOptions {
  virsh: Virsh;
  /**
   * Has the SPM bring a volume's record up to its image (its backing volume,
   * its virtual size): after a block job changed a disk's chain.
   */
  followImage?: (volume: string) => Promise<void>;
  /** How often every watched domain is reconciled without an event (the net under a missed one). */
  reconcileIntervalMs?: number;
}

/** A missed device event costs at most this much latency; through libvirtd's socket a reconcile costs about a millisecond. */
export const DEFAULT_RECONCILE_INTERVAL_MS = 30_000;
/** libvirt events after which a domain's devices or chain may differ from what is watched. */
const RECONCILE_EVENTS = new Set(['device-added', 'device-removed', 'block-job', 'block-job-2', 'metadata-change', 'job-completed', 'disk-change', 'tray-change']);
export const LAYER_REPLACED_MESSAGE = "the drive's active layer is another volume now (snapshot, block commit or copy); watching that one instead";
export const DRIVE_UNPLUGGED_MESSAGE = 'thin drive left the domain (unplugged); no longer watched';
export const LAYER_LEFT_MESSAGE = 'backing layer left the chain (block commit, pull or a new top); no longer watched as a layer';
export const COPY_ENDED_MESSAGE = 'block copy ended (pivoted: the copy is the active layer now; or cancelled); its target is no longer kept as large as its disk';
export const CHAIN_RECORDED_MESSAGE = "block job completed: the SPM's records of the disk's chain follow its images (parents, virtual sizes)";
export const SETTINGS_FOLLOWED_MESSAGE = 'thin drive settings changed (policy or image size); following them';

/** An announced migration that never arrived is forgotten after this (libvirt gives up on an incoming migration long before). */
const INCOMING_ANNOUNCEMENT_MS = 10 * 60_000;

interface Watched {
  vm: LibvirtVm;
  monitor: VmMonitor;
  /** The drives as last reconciled, by target. */
  drives: Map<string, ThinDrive>;
}

interface Reconciling {
  promise: Promise<void>;
  again: boolean;
  why: string;
}

export class LibvirtAgent extends EventEmitter<MonitorEvents> {
  private readonly watched = new Map<string, Watched>();
  private readonly reconciling = new Map<string, Reconciling>();
  /** Domains libvirt said are migrating in to this host (its hook's `migrate begin`, "Started Migrated"), with when. */
  private readonly incoming = new Map<string, number>();
  /** Domains being restored from a save (the hook's `restore`, "Started Restored"), until watched. */
  private readonly restoring = new Set<string>();
  private stream: LibvirtEventSource | undefined;
  private reconcileTimer: TimerHandle | undefined;
  private stopped = false;

  constructor(private readonly options: LibvirtAgentOptions) {
    super();
  }

  async start(): Promise<void> {
    this.stopped = false;
    this.stream = await this.followEvents();
    await this.rescan(false);
    this.scheduleReconcile();
  }

  /**
   * libvirt's events over the socket the agent already asks its questions
   * on; `virsh event` only when that socket cannot be used (another URI,
   * another authentication, --no-libvirt-socket).
   */
  private async followEvents(): Promise<LibvirtEventSource> {
    const { virsh, clock, logger } = this.options;
    const listen = (source: LibvirtEventSource) => {
      source.on('event', (event) => this.onEvent(event));
      source.on('restarted', () => void this.rescan(true));
    };
    if (virsh.usesSocket) {
      const remote = new RemoteEventStream(virsh.uri, clock, logger);
      listen(remote);
      try {
        await remote.start();
        logger.info({ uri: virsh.uri }, 'following libvirt events over its socket');
        return remote;
      } catch (error) {
        remote.removeAllListeners();
        logger.warn({ uri: virsh.uri, err: errorMessage(error) }, 'cannot follow libvirt events over its socket; following `virsh event` instead');
      }
    }
    const stream = new LibvirtEventStream(virsh.uri, clock, logger);
    listen(stream);
    stream.start();
    return stream;
  }

  stop(): void {
    this.stopped = true;
    this.reconcileTimer?.cancel();
    this.stream?.stop();
    for (const watched of this.watched.values()) watched.monitor.stop();
    this.watched.clear();
  }

  status(): VmStatus[] {
    return [...this.watched.values()].map((watched) => watched.monitor.status());
  }

  /** Reconciles every active domain; with `reconnected`, re-arms the ones already watched. */
  async rescan(reconnected: boolean): Promise<void> {
    let domains: string[];
    try {
      domains = await this.options.virsh.activeDomains();
    } catch (error) {
      this.options.logger.warn({ err: errorMessage(error) }, 'cannot list libvirt domains; will rescan when the event stream is back');
      return;
    }
    for (const [name, watched] of this.watched) {
      if (!domains.includes(name)) this.detach(name);
      else if (reconnected) watched.monitor.handle({ type: 'reconnected' });
    }
    // After a reconnect events may have been missed: every domain is looked at again. Otherwise only the new ones.
    await Promise.all(domains.filter((name) => reconnected || !this.watched.has(name)).map((name) => this.reconcile(name, this.watched.has(name) ? 'rescan after reconnecting' : 'found running')));
  }

  /**
   * What the libvirt hook reported (through the spool). `migrate begin` runs
   * on the destination before QEMU is even started: from then on this host
   * knows the domain migrates in, and announces its views from the moment it
   * can see the domain, not from a state it might miss in a poll.
   */
  async hookEvents(events: readonly HookEvent[]): Promise<void> {
    for (const event of events) {
      if (event.operation === 'migrate' && event.subOperation === 'begin') this.expectIncoming(event.domain, 'the libvirt hook announced an incoming live migration');
      if (event.operation === 'restore' && event.subOperation === 'begin') this.restoring.add(event.domain);
      if (event.operation === 'release' || event.operation === 'stopped') this.incoming.delete(event.domain);
    }
    await this.rescan(false);
    // A watched domain the hook spoke of (a restore, a reconnect of its QEMU) is looked at again; the others are not disturbed.
    const named = new Set(events.map((event) => event.domain));
    await Promise.all([...named].filter((domain) => this.watched.has(domain)).map((domain) => this.reconcile(domain, 'libvirt hook event')));
  }

  private expectIncoming(domain: string, why: string): void {
    const now = this.options.clock.now();
    for (const [name, since] of this.incoming) if (now - since > INCOMING_ANNOUNCEMENT_MS) this.incoming.delete(name);
    if (!this.incoming.has(domain)) this.options.logger.info({ vm: domain }, `${why}: its volumes are refreshed and announced until it runs here`);
    this.incoming.set(domain, now);
    this.watched.get(domain)?.monitor.handle({ type: 'migrating-in' });
  }

  private onEvent(event: LibvirtEvent): void {
    if (event.kind === 'lifecycle') {
      if (event.event === 'Started' && event.detail === 'Migrated') this.expectIncoming(event.domain, 'libvirt started a domain for an incoming live migration');
      if (event.event === 'Started' && event.detail === 'Restored' && !this.watched.has(event.domain)) this.restoring.add(event.domain);
      if (event.event === 'Started') void this.reconcile(event.domain, `started (${event.detail})`);
      if (event.event === 'Resumed' && !this.watched.has(event.domain)) void this.reconcile(event.domain, 'resumed');
      if (event.event === 'Resumed') this.incoming.delete(event.domain);
      if (event.event === 'Stopped' && event.detail === 'Migrated') {
        this.detach(event.domain, MIGRATED_AWAY_MESSAGE);
      } else if (event.event === 'Stopped' || event.event === 'Shutdown' || event.event === 'Crashed') {
        this.incoming.delete(event.domain);
        this.restoring.delete(event.domain);
        this.detach(event.domain);
      }
    }
    if (event.kind === 'other' && RECONCILE_EVENTS.has(event.name)) {
      void this.reconcile(event.domain, `libvirt event ${event.name}${event.detail ? ` (${event.detail})` : ''}`);
      const job = event.name === 'block-job-2' ? completedBlockJob(event.detail) : undefined;
      if (job) void this.recordChain(event.domain, job.target, job.job);
      if (event.name === 'metadata-change' || event.name === 'device-added' || event.name === 'device-removed') return;
    }
    const watched = this.watched.get(event.domain);
    if (!watched) return;
    const input = watched.vm.translate(event, (path) => [...watched.drives.values()].find((drive) => drive.source === path)?.target);
    if (input) watched.monitor.handle(input);
  }

  /**
   * A block job on the disk completed: its chain is what the images say now
   * (a pulled layer has no parent, a committed one another), and the SPM's
   * records follow them, so the old parent can be deleted and tideline's own
   * chain commands see the chain as it is.
   */
  private async recordChain(domain: string, target: string, job: string): Promise<void> {
    const { virsh, plugin, logger, followImage } = this.options;
    if (!followImage) return;
    try {
      const disk = parseDomainXml(await virsh.dumpXml(domain)).disks.find((candidate) => candidate.target === target);
      if (!disk) return;
      const volumes = await chainVolumes(disk, plugin);
      for (const volume of volumes) await followImage(volume);
      if (volumes.length > 0) logger.info({ vm: domain, drive: target, job, volumes }, CHAIN_RECORDED_MESSAGE);
    } catch (error) {
      logger.warn({ vm: domain, drive: target, job, err: errorMessage(error) }, "could not have the SPM record the disk's chain after a block job; deleting a layer it no longer needs checks the images again");
    }
  }

  /** The disk's active layer is no longer the one watched (a snapshot, a commit's pivot, a block copy's): look again. */
  private chainChanged(domain: string, target: string): void {
    if (!this.watched.has(domain)) return;
    void this.reconcile(domain, `the active layer of ${target} changed (snapshot, block commit or copy)`);
  }

  /** The domain's pause mark follows its pause for lack of space (src/libvirt/pause-marker.ts). */
  private followPauseMark(domain: string, monitor: VmMonitor, found: string): void {
    const marker = new PauseMarker(this.options.virsh, domain, this.options.logger);
    if (isPauseMark(found)) marker.found(found);
    monitor.on('paused', (event) => marker.mark(event.drives));
    const follow = () => {
      if (!monitor.pausedForNoSpace) marker.clear();
    };
    monitor.on('changed', follow);
    follow();
  }

  private async reconcileIfCopied(domain: string, target: string): Promise<void> {
    const disks = await this.options.virsh.dumpXml(domain).then((xml) => parseDomainXml(xml).disks, () => []);
    if (disks.some((disk) => disk.target === target && disk.mirror?.job === 'copy')) await this.reconcile(domain, `${target} grew while a block copy of it runs: its target must follow`);
  }

  /** One reconcile at a time per domain; asks arriving meanwhile are served by one more pass. */
  reconcile(domain: string, why: string): Promise<void> {
    const running = this.reconciling.get(domain);
    if (running) {
      running.again = true;
      running.why = why;
      return running.promise;
    }
    const entry: Reconciling = { promise: Promise.resolve(), again: false, why };
    entry.promise = (async () => {
      try {
        do {
          entry.again = false;
          await this.reconcileOnce(domain, entry.why);
        } while (entry.again && !this.stopped);
      } catch (error) {
        this.options.logger.warn({ vm: domain, err: errorMessage(error) }, 'could not read the domain to watch its thin drives; the next event or rescan tries again');
      } finally {
        this.reconciling.delete(domain);
      }
    })();
    this.reconciling.set(domain, entry);
    return entry.promise;
  }

  private async reconcileOnce(domain: string, why: string): Promise<void> {
    if (this.stopped) return;
    const { virsh, logger } = this.options;
    const watched = this.watched.get(domain);
    const info = parseDomainXml(await virsh.dumpXml(domain));
    const wanted = await deriveThinDrives(domain, info, {
      plugin: this.options.plugin,
      policy: this.options.policy,
      ...(this.options.maxSizeBytes ? { maxSizeBytes: this.options.maxSizeBytes } : {}),
      logger,
      capacityFromLibvirt: async (target) => (await virsh.blockStats(domain)).find((entry) => entry.target === target)?.capacity ?? 0,
    }, new Set(watched?.drives.keys() ?? []));
    if (this.stopped) return;
    if (!watched) {
      if (wanted.size > 0) await this.watch(domain, wanted);
      return;
    }
    if (wanted.size === 0) {
      this.detach(domain, 'no thin drive left in the domain; no longer watched');
      return;
    }
    const { monitor, vm, drives } = watched;
    for (const [target, had] of drives) {
      const now = wanted.get(target);
      if (now && now.config.volume === had.config.volume) continue;
      monitor.removeDrive(target);
      vm.forgetDrive(target);
      drives.delete(target);
      logger.info({ vm: domain, drive: target, volume: had.config.volume, why }, now ? LAYER_REPLACED_MESSAGE : had.config.backingLayer ? LAYER_LEFT_MESSAGE : had.config.replicaOf ? COPY_ENDED_MESSAGE : DRIVE_UNPLUGGED_MESSAGE);
    }
    for (const [target, drive] of wanted) {
      const had = drives.get(target);
      vm.watchDrive(target, drive.index);
      if (had) {
        drives.set(target, drive);
        const current = monitor.driveConfigs().find((config) => config.drive === target);
        if (!current) continue;
        // The cap never goes down here: an image read while it is being resized may still show the old size.
        const config: DriveConfig = { ...drive.config, capBytes: Math.max(drive.config.capBytes, current.capBytes) };
        if (!sameDriveSettings(config, current)) {
          logger.info({ vm: domain, drive: target, volume: drive.config.volume, capBytes: config.capBytes, why }, SETTINGS_FOLLOWED_MESSAGE);
          monitor.reconfigureDrive(config);
        }
        continue;
      }
      const { volumeBytes, grewUnseen } = await this.prepareVolume(domain, drive, why);
      drives.set(target, drive);
      monitor.addDrive(drive.config, volumeBytes, grewUnseen);
      logger.info({ vm: domain, drive: target, volume: drive.config.volume, volumeBytes, capBytes: drive.config.capBytes, why }, 'watching thin drive');
    }
  }

  /**
   * The volume as this host sees it now. A drive the hook prepared (start,
   * restore, incoming migration) is active and refreshed; a hot-plugged one
   * had no hook call, so it is activated if need be and refreshed here.
   */
  private async prepareVolume(domain: string, drive: ThinDrive, why: string): Promise<{ volumeBytes: number; grewUnseen: boolean }> {
    const { plugin, logger } = this.options;
    const { volume } = drive.config;
    if (!(await plugin.isActive(volume))) {
      await plugin.activate(volume);
      logger.warn({ vm: domain, drive: drive.target, volume, why }, 'a thin disk attached to a running domain was not active on this host (libvirt calls no hook for hot-plug): activated it here');
    }
    return refreshAtAttach(plugin, volume);
  }

  private async watch(domain: string, wanted: Map<string, ThinDrive>): Promise<void> {
    const { logger } = this.options;
    const drives: Array<{ config: DriveConfig; volumeBytes: number; grewUnseen: boolean }> = [];
    for (const drive of wanted.values()) {
      const { volumeBytes, grewUnseen } = await this.prepareVolume(domain, drive, 'domain found');
      drives.push({ config: drive.config, volumeBytes, grewUnseen });
      logger.info({ vm: domain, drive: drive.target, volume: drive.config.volume, volumeBytes, capBytes: drive.config.capBytes }, 'watching thin drive');
    }
    if (this.stopped || this.watched.has(domain)) return;
    const vm = new LibvirtVm(domain, this.options.virsh, [...wanted.values()].map((drive) => ({ target: drive.target, index: drive.index })), (target) => this.chainChanged(domain, target));
    const monitor = new VmMonitor({
      vm: domain,
      drives,
      clock: this.options.clock,
      extender: this.options.extender,
      control: vm,
      logger: this.options.logger,
      capacity: { capBytes: (config) => this.imageCap(domain, config) },
      ...(this.options.pollIntervalMs ? { pollIntervalMs: this.options.pollIntervalMs } : {}),
      ...(this.options.peers ? { peers: this.options.peers } : {}),
    });
    forwardMonitorEvents(monitor, this);
    // libvirt says nothing when an administrator starts a block copy; a disk that grows is when its copy target must
    // follow, so the domain's XML is read again then (over the socket, about a millisecond), and reconciled only when
    // a disk is being copied that is not watched as such yet (a watched copy target follows its disk in the monitor).
    monitor.on('extended', (event) => {
      if (isCopyTargetName(event.drive) || this.watched.get(domain)?.drives.has(copyTargetName(event.drive))) return;
      void this.reconcileIfCopied(domain, event.drive);
    });
    this.watched.set(domain, { vm, monitor, drives: new Map(wanted) });
    if (this.incoming.has(domain)) monitor.handle({ type: 'migrating-in' });
    const mark = await this.options.virsh.metadata(domain, PAUSE_NAMESPACE).catch(() => '');
    // Marked, and not an arrival: restored from a save taken while paused for lack of space (on this host or another).
    const restoredPaused = isPauseMark(mark) && !this.incoming.has(domain);
    vm.restoredPausedForSpace = restoredPaused;
    vm.restored = this.restoring.delete(domain);
    await monitor.start();
    if (restoredPaused) monitor.handle({ type: 'restored-paused-for-space' });
    this.followPauseMark(domain, monitor, mark);
    logger.info({ vm: domain, drives: [...wanted.keys()] }, 'monitoring VM');
  }

  /**
   * `tideline volume resize` of a volume a domain here writes: grown live
   * through libvirt (QEMU rewrites the header), and the drive's cap follows at
   * once. The domain's name, or undefined when no domain here has the volume
   * as a disk's active layer. A smaller size is refused before libvirt is asked.
   */
  async resizeLive(volume: string, virtualBytes: number): Promise<string | undefined> {
    for (const [domain, watched] of this.watched) {
      const drive = [...watched.drives.values()].find((candidate) => candidate.config.volume === volume && !candidate.config.backingLayer && candidate.config.replicaOf === undefined);
      if (!drive) continue;
      const current = (await readQcow2Header(drive.source)).virtualBytes;
      if (virtualBytes < current) throw new VirtualShrinkRefusedError(volume, current, virtualBytes);
      if (virtualBytes > current) {
        await this.options.virsh.blockResize(domain, drive.target, virtualBytes);
        this.options.logger.info({ vm: domain, drive: drive.target, volume, fromVirtualBytes: current, virtualBytes }, 'disk grown live (blockresize)');
      }
      await this.reconcile(domain, 'volume resize');
      return domain;
    }
    return undefined;
  }

  /** A volume was reduced through this host: the domains here that have it as a backing layer arm it again below its new end. */
  volumeReduced(volume: string, volumeBytes: number): void {
    for (const watched of this.watched.values()) watched.monitor.volumeReduced(volume, volumeBytes);
  }

  /** The cap the drive's active layer gives now, read from its image on the shared storage. */
  private async imageCap(domain: string, config: DriveConfig): Promise<number> {
    const drive = this.watched.get(domain)?.drives.get(config.drive);
    if (!drive || drive.config.volume !== config.volume) return config.capBytes;
    return imageCapBytes(drive.source, this.options.plugin.extentBytes, drive.maxSizeBytes);
  }

  /** Every watched domain, now and then, without an event: a missed one costs latency, not a drive left unwatched. */
  private scheduleReconcile(): void {
    if (this.stopped) return;
    this.reconcileTimer = this.options.clock.setTimeout(() => {
      void Promise.all([...this.watched.keys()].map((domain) => this.reconcile(domain, 'periodic reconcile'))).finally(() => this.scheduleReconcile());
    }, this.options.reconcileIntervalMs ?? DEFAULT_RECONCILE_INTERVAL_MS);
  }

  private detach(domain: string, why = 'domain stopped; no longer watched'): void {
    const watched = this.watched.get(domain);
    if (!watched) return;
    watched.monitor.stop();
    this.watched.delete(domain);
    this.options.logger.info({ vm: domain }, why);
    this.emit('changed');
  }
}
