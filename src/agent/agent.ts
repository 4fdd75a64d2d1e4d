import type http from 'node:http';
import path from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import type { Logger } from 'pino';
import type { StoragePlugin } from '../../plugins/types.js';
import { agentPolicy, type AgentSettings } from '../config/agent-settings.js';
import { errorMessage } from '../errors.js';
import type { Extender, MigrationPeers } from '../monitor/ports.js';
import type { VmStatus } from '../monitor/vm-monitor.js';
import type { Clock, TimerHandle } from '../util/clock.js';
import type { LibvirtAgent } from '../libvirt/libvirt-agent.js';
import { AgentMetrics } from './metrics.js';
import { QemuAttachment } from './qemu-attachment.js';
import { writeStatus } from './status-file.js';

/**
 * The per-host daemon: one QemuAttachment per VM, the status file that
 * `tideline status` reads, and the Prometheus endpoint. It owns no policy of
 * its own; everything it decides comes from the monitors.
 */
export interface AgentOptions {
  settings: AgentSettings;
  plugin: StoragePlugin;
  extender: Extender;
  clock: Clock;
  logger: Logger;
  /** Domains found and followed through libvirt, besides the QMP sockets named in the settings. */
  libvirt?: LibvirtAgent;
  /** The other host of a live migration, through the shared mailbox. */
  peers?: MigrationPeers;
  /** A directory whose `*.qmp` sockets are plain QEMU VMs to watch as they come and go (named after the file). */
  qmpDirectory?: string;
}

const QMP_SUFFIX = '.qmp';

/** Coalesces bursts of changes (every extension emits several) into one status write. */
const STATUS_WRITE_DELAY_MS = 200;

export class Agent {
  readonly metrics = new AgentMetrics();
  private readonly attachments = new Map<string, QemuAttachment>();
  private server: http.Server | undefined;
  private statusTimer: TimerHandle | undefined;
  private statusWriting: Promise<void> = Promise.resolve();
  private directoryWatcher: FSWatcher | undefined;

  constructor(private readonly options: AgentOptions) {}

  async start(): Promise<void> {
    const { settings, logger } = this.options;
    if (settings.metricsListen) {
      const { host, port } = settings.metricsListen;
      this.server = await this.metrics.listen(host, port, () => this.metrics.updateGauges(this.status()));
      logger.info({ host, port }, 'serving Prometheus metrics on /metrics');
    }
    const { libvirt } = this.options;
    if (libvirt) {
      this.metrics.observe(libvirt);
      libvirt.on('changed', () => this.scheduleStatusWrite());
      libvirt.on('extension-failed', (event) => logger.error(event, 'extension failed'));
      await libvirt.start();
    }
    if (this.options.qmpDirectory) this.watchQmpDirectory(this.options.qmpDirectory);
    // VMs attach independently: one VM whose QEMU is not up yet must not hold back the others.
    await Promise.all(settings.qmp.map((target) => this.attach(target.vm, target.socketPath)));
    this.scheduleStatusWrite();
  }

  status(): VmStatus[] {
    return [...[...this.attachments.values()].flatMap((attachment) => attachment.status() ?? []), ...(this.options.libvirt?.status() ?? [])];
  }

  async stop(): Promise<void> {
    await this.directoryWatcher?.close();
    for (const attachment of this.attachments.values()) attachment.stop();
    this.options.libvirt?.stop();
    this.statusTimer?.cancel();
    this.server?.close();
    await this.statusWriting;
    await this.writeStatusNow();
  }

  private watchQmpDirectory(directory: string): void {
    const { logger } = this.options;
    this.directoryWatcher = watch(directory, { depth: 0, ignoreInitial: false });
    this.directoryWatcher.on('add', (file) => {
      if (!file.endsWith(QMP_SUFFIX)) return;
      const vm = path.basename(file, QMP_SUFFIX);
      if (this.attachments.has(vm)) return;
      void this.attach(vm, file).catch((error: unknown) => logger.warn({ vm, socketPath: file, err: errorMessage(error) }, 'could not attach to QMP socket'));
    });
    this.directoryWatcher.on('unlink', (file) => {
      const vm = path.basename(file, QMP_SUFFIX);
      const attachment = this.attachments.get(vm);
      if (!file.endsWith(QMP_SUFFIX) || !attachment) return;
      // QEMU removes its socket when it exits: the VM is gone.
      attachment.stop();
      this.attachments.delete(vm);
      logger.info({ vm, socketPath: file }, 'QMP socket removed; VM no longer watched');
      this.scheduleStatusWrite();
    });
    logger.info({ directory }, 'watching for QMP sockets');
  }

  private async attach(vm: string, socketPath: string): Promise<void> {
    const { settings, plugin, extender, clock, logger, peers } = this.options;
    const attachment = new QemuAttachment({
      ...(peers ? { peers } : {}),
      vm,
      socketPath,
      plugin,
      extender,
      policy: agentPolicy(settings, plugin.extentBytes),
      ...(settings.maxSize ? { maxSizeBytes: settings.maxSize } : {}),
      clock,
      logger,
      pollIntervalMs: settings.pollSeconds * 1000,
    });
    this.attachments.set(vm, attachment);
    this.metrics.observe(attachment);
    attachment.on('changed', () => this.scheduleStatusWrite());
    attachment.on('extension-failed', (event) => logger.error(event, 'extension failed'));
    logger.info({ vm, socketPath }, 'waiting for QMP');
    await attachment.start();
    logger.info({ vm, drives: attachment.status()?.drives.map((drive) => drive.drive) ?? [] }, 'monitoring VM');
  }

  private scheduleStatusWrite(): void {
    if (this.statusTimer) return;
    this.statusTimer = this.options.clock.setTimeout(() => {
      this.statusTimer = undefined;
      this.statusWriting = this.statusWriting.then(() => this.writeStatusNow());
    }, STATUS_WRITE_DELAY_MS);
  }

  private async writeStatusNow(): Promise<void> {
    await writeStatus(this.options.settings.statusFile, this.status()).catch((error: unknown) =>
      this.options.logger.warn({ file: this.options.settings.statusFile, err: errorMessage(error) }, 'could not write the status file'),
    );
  }
}
