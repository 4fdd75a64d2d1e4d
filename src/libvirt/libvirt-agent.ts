import { EventEmitter } from 'node:events';
import { errorMessage } from '../errors.js';
import type { DriveConfig } from '../monitor/drive-state.js';
import type { PolicySettings } from '../monitor/policy.js';
import { driveCapBytes, headerBitmapBytes } from '../monitor/qcow2-capacity.js';
import { MIGRATED_AWAY_MESSAGE } from '../monitor/migration.js';
import { forwardMonitorEvents, VmMonitor, type MonitorEvents, type VmStatus } from '../monitor/vm-monitor.js';
import { parseDomainXml, policyFor } from './domain-xml.js';
import type { LibvirtEvent } from './events.js';
import { LibvirtEventStream } from './event-stream.js';
import { LibvirtVm } from './libvirt-vm.js';
import type { Virsh } from './virsh.js';
import type { WatchOptions } from '../agent/watch-options.js';
import { refreshAtAttach } from '../agent/refresh-at-attach.js';
import { readQcow2Header } from '../qcow2/header.js';

/**
 * The agent's libvirt side: finds running domains and their thin drives,
 * runs a VmMonitor for each domain, feeds it libvirt's events, and follows
 * domains as they start and stop. After the event stream comes back (libvirtd
 * restart) it rescans everything: thresholds are re-armed and a domain paused
 * for ENOSPC meanwhile is found by the monitor's first poll and resumed.
 */
/** Per-VM and per-disk metadata override the host-wide policy. */
export interface LibvirtAgentOptions extends WatchOptions {
  virsh: Virsh;
}

interface Watched {
  vm: LibvirtVm;
  monitor: VmMonitor;
  pathToTarget: Map<string, string>;
}

export class LibvirtAgent extends EventEmitter<MonitorEvents> {
  private readonly watched = new Map<string, Watched>();
  private readonly attaching = new Map<string, Promise<void>>();
  private readonly stream: LibvirtEventStream;

  constructor(private readonly options: LibvirtAgentOptions) {
    super();
    this.stream = new LibvirtEventStream(options.virsh.uri, options.clock, options.logger);
  }

  async start(): Promise<void> {
    this.stream.on('event', (event) => this.onEvent(event));
    this.stream.on('restarted', () => void this.rescan(true));
    this.stream.start();
    await this.rescan(false);
  }

  stop(): void {
    this.stream.stop();
    for (const watched of this.watched.values()) watched.monitor.stop();
    this.watched.clear();
  }

  status(): VmStatus[] {
    return [...this.watched.values()].map((watched) => watched.monitor.status());
  }

  /** Attaches to every active domain not watched yet; with `reconnected`, re-arms the ones already watched. */
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
    await Promise.all(domains.filter((name) => !this.watched.has(name)).map((name) => this.attach(name)));
  }

  private onEvent(event: LibvirtEvent): void {
    if (event.kind === 'lifecycle') {
      if (event.event === 'Started' || (event.event === 'Resumed' && !this.watched.has(event.domain))) void this.attach(event.domain);
      if (event.event === 'Stopped' && event.detail === 'Migrated') {
        this.detach(event.domain, MIGRATED_AWAY_MESSAGE);
      } else if (event.event === 'Stopped' || event.event === 'Shutdown' || event.event === 'Crashed') {
        this.detach(event.domain);
      }
    }
    if (event.kind === 'other' && event.name === 'metadata-change' && this.watched.has(event.domain)) {
      // The policy may have changed: watch the domain again with what its XML says now.
      this.options.logger.info({ vm: event.domain }, 'domain metadata changed; applying its policy');
      this.detach(event.domain, 'watching the domain again with its new policy');
      void this.attach(event.domain);
      return;
    }
    const watched = this.watched.get(event.domain);
    if (!watched) return;
    const input = watched.vm.translate(event, (path) => watched.pathToTarget.get(path));
    if (input) watched.monitor.handle(input);
  }

  /** The disk's chain changed under a watched domain (a new layer on top, or a commit's pivot): watch it again from its XML. */
  private followNewTop(domain: string, target: string): void {
    if (!this.watched.has(domain)) return;
    this.options.logger.info({ vm: domain, drive: target }, 'the disk\'s active layer changed (snapshot or block commit); watching the new top');
    this.detach(domain, 'watching the domain again with its new disk chain');
    void this.attach(domain);
  }

  private attach(domain: string): Promise<void> {
    const pending = this.attaching.get(domain);
    if (pending) return pending;
    const attempt = this.doAttach(domain)
      .catch((error: unknown) => this.options.logger.warn({ vm: domain, err: errorMessage(error) }, 'could not attach to domain'))
      .finally(() => this.attaching.delete(domain));
    this.attaching.set(domain, attempt);
    return attempt;
  }

  private async doAttach(domain: string): Promise<void> {
    if (this.watched.has(domain)) return;
    const { virsh, plugin, logger } = this.options;
    const info = parseDomainXml(await virsh.dumpXml(domain));
    const drives: Array<{ config: DriveConfig; volumeBytes: number; grewUnseen: boolean }> = [];
    const indexes: Array<{ target: string; index: number | undefined }> = [];
    const pathToTarget = new Map<string, string>();
    for (const disk of info.disks) {
      if (disk.device !== 'disk' || !disk.source) continue;
      const volume = await plugin.volumeForPath(disk.source);
      if (!volume) continue;
      const policy = policyFor(info, disk.target);
      if (policy.enabled === false) {
        logger.info({ vm: domain, drive: disk.target, volume }, 'thin provisioning disabled for this disk by domain metadata');
        continue;
      }
      if (disk.format !== 'qcow2') {
        logger.info({ vm: domain, drive: disk.target, volume, format: disk.format }, 'disk on a tideline volume is not qcow2: nothing to thin-provision');
        continue;
      }
      if (disk.errorPolicy !== 'stop') {
        logger.error({ vm: domain, drive: disk.target, volume, errorPolicy: disk.errorPolicy ?? 'report' }, "thin disk without error_policy='stop': a write that finds no space fails in the guest instead of pausing the VM; set error_policy='stop'");
      }
      const { virtualBytes, clusterBytes, bitmapBytes } = await this.imageSize(domain, disk.target, disk.source);
      const capBytes = driveCapBytes(virtualBytes, clusterBytes, this.options.policy.extentBytes, policy.maxSize ?? this.options.maxSizeBytes, bitmapBytes);
      const { volumeBytes, grewUnseen } = await refreshAtAttach(plugin, volume);
      const drivePolicy: PolicySettings = { ...this.options.policy, ...(policy.chunk ? { chunkBytes: policy.chunk } : {}), ...(policy.freeTarget ? { freeTargetBytes: policy.freeTarget } : {}) };
      drives.push({ config: { drive: disk.target, volume, capBytes, policy: drivePolicy }, volumeBytes, grewUnseen });
      indexes.push({ target: disk.target, index: disk.index });
      pathToTarget.set(disk.source, disk.target);
      logger.info({ vm: domain, drive: disk.target, volume, volumeBytes, capBytes, virtualBytes }, 'watching thin drive');
    }
    if (drives.length === 0) return;
    const vm = new LibvirtVm(domain, virsh, indexes, (target) => this.followNewTop(domain, target));
    const monitor = new VmMonitor({
      vm: domain,
      drives,
      clock: this.options.clock,
      extender: this.options.extender,
      control: vm,
      logger: this.options.logger.child({ vm: domain }),
      ...(this.options.pollIntervalMs ? { pollIntervalMs: this.options.pollIntervalMs } : {}),
      ...(this.options.peers ? { peers: this.options.peers } : {}),
    });
    forwardMonitorEvents(monitor, this);
    this.watched.set(domain, { vm, monitor, pathToTarget });
    await monitor.start();
    logger.info({ vm: domain, drives: drives.map((drive) => drive.config.drive) }, 'monitoring VM');
  }

  /**
   * Virtual and cluster size from the image's own header: libvirt answers no
   * block query on a live migration's destination until the migration ends.
   * Only an unreadable header falls back to libvirt (and to the largest
   * metadata among common cluster sizes, QEMU's default 64 KiB).
   */
  private async imageSize(domain: string, target: string, source: string): Promise<{ virtualBytes: number; clusterBytes: number | undefined; bitmapBytes: number }> {
    try {
      const header = await readQcow2Header(source);
      return { virtualBytes: header.virtualBytes, clusterBytes: header.clusterBytes, bitmapBytes: headerBitmapBytes(header) };
    } catch (error) {
      this.options.logger.warn({ vm: domain, drive: target, err: errorMessage(error) }, "cannot read the disk's qcow2 header; asking libvirt for its size");
      const stats = await this.options.virsh.blockStats(domain);
      return { virtualBytes: stats.find((entry) => entry.target === target)?.capacity ?? 0, clusterBytes: undefined, bitmapBytes: 0 };
    }
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
