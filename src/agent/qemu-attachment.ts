import { EventEmitter } from 'node:events';
import { errorMessage } from '../errors.js';
import type { DriveConfig } from '../monitor/drive-state.js';
import { driveCapBytes, headerBitmapBytes } from '../monitor/qcow2-capacity.js';
import { readQcow2Header } from '../qcow2/header.js';
import { forwardMonitorEvents, VmMonitor, type MonitorEvents, type VmStatus } from '../monitor/vm-monitor.js';
import { QmpClient } from '../qmp/client.js';
import { refreshAtAttach } from './refresh-at-attach.js';
import type { WatchOptions } from './watch-options.js';
import { QmpVm } from '../qemu/qmp-vm.js';
import type { QemuDrive } from '../qemu/block-info.js';

export interface AttachmentOptions extends WatchOptions {
  /** Name for logs and status (the VM's name). */
  vm: string;
  socketPath: string;
  retryDelayMs?: number;
  commandTimeoutMs?: number;
  /**
   * False: ignore BLOCK_WRITE_THRESHOLD and find crossings only by polling, as
   * designs without threshold events did (the benchmark's seed-2011 baseline).
   */
  thresholdEvents?: boolean;
}

/**
 * One QEMU process under watch: connects to its QMP socket, finds the qcow2
 * drives that live on volumes of our storage domain, and runs a VmMonitor for
 * them. Survives QEMU closing the socket: the client reconnects and the
 * monitor resynchronises.
 */
export class QemuAttachment extends EventEmitter<MonitorEvents> {
  readonly client: QmpClient;
  private readonly vmControl: QmpVm;
  private monitor: VmMonitor | undefined;
  private restarting: Promise<void> | undefined;

  constructor(private readonly options: AttachmentOptions) {
    super();
    this.client = new QmpClient(options.socketPath, {
      clock: options.clock,
      logger: options.logger,
      ...(options.commandTimeoutMs ? { commandTimeoutMs: options.commandTimeoutMs } : {}),
    });
    this.vmControl = new QmpVm(this.client, (drive) => this.followNewTop(drive));
  }

  async start(): Promise<void> {
    this.client.on('event', (event) => {
      const input = this.vmControl.translate(event);
      if (input?.type === 'threshold' && this.options.thresholdEvents === false) return;
      if (input) this.monitor?.handle(input);
    });
    this.client.on('connected', () => {
      if (!this.monitor) return;
      // A VM that migrated away and came back (the same socket, a new QEMU) is watched afresh.
      const restart = this.monitor.status().migration === 'left';
      void (restart ? this.startMonitor() : this.vmControl.discover().then(() => this.monitor?.handle({ type: 'reconnected' }))).catch((error: unknown) =>
        this.options.logger.warn({ vm: this.options.vm, err: errorMessage(error) }, 'rediscovery after reconnect failed'),
      );
    });
    await this.client.start();
    await this.startMonitor();
  }

  private async startMonitor(): Promise<void> {
    // The old monitor goes on until the new one can start: if reading the block graph fails, its next poll tries again.
    const drives = await this.thinDrives(await this.vmControl.discover());
    this.monitor?.stop();
    const monitor = new VmMonitor({
      vm: this.options.vm,
      drives,
      clock: this.options.clock,
      extender: this.options.extender,
      control: this.vmControl,
      logger: this.options.logger,
      ...(this.options.pollIntervalMs ? { pollIntervalMs: this.options.pollIntervalMs } : {}),
      ...(this.options.retryDelayMs ? { retryDelayMs: this.options.retryDelayMs } : {}),
      ...(this.options.peers ? { peers: this.options.peers } : {}),
    });
    this.monitor = monitor;
    forwardMonitorEvents(monitor, this);
    await monitor.start();
  }

  /** A drive's active layer changed (snapshot, commit): watch the VM again from its block graph. */
  private followNewTop(drive: string): void {
    if (this.restarting) return;
    this.options.logger.info({ vm: this.options.vm, drive }, "the disk's active layer changed (snapshot or block commit); watching the new top");
    this.restarting = this.startMonitor()
      .catch((error: unknown) => this.options.logger.warn({ vm: this.options.vm, err: errorMessage(error) }, 'watching the new top failed; retrying at the next poll'))
      .finally(() => (this.restarting = undefined));
  }

  status(): VmStatus | undefined {
    return this.monitor?.status();
  }

  stop(): void {
    this.monitor?.stop();
    this.client.close();
  }

  private async thinDrives(drives: QemuDrive[]): Promise<Array<{ config: DriveConfig; volumeBytes: number; grewUnseen: boolean }>> {
    const { plugin, policy, logger, vm } = this.options;
    const result: Array<{ config: DriveConfig; volumeBytes: number; grewUnseen: boolean }> = [];
    for (const drive of drives) {
      const volume = drive.path ? await plugin.volumeForPath(drive.path) : undefined;
      if (!volume) continue;
      if (drive.format !== 'qcow2') {
        logger.info({ vm, drive: drive.drive, volume, format: drive.format }, 'drive on a tideline volume is not qcow2: nothing to thin-provision');
        continue;
      }
      // Persistent dirty bitmaps (backup tools add them) take room the fully allocated size leaves out; the header says how many.
      const bitmapBytes = await readQcow2Header(drive.path!).then(headerBitmapBytes, (error: unknown) => {
        logger.warn({ vm, drive: drive.drive, volume, err: errorMessage(error) }, "cannot read the drive's qcow2 header; its cap leaves out room for dirty bitmaps");
        return 0;
      });
      const capBytes = driveCapBytes(drive.virtualBytes, drive.clusterBytes, policy.extentBytes, this.options.maxSizeBytes, bitmapBytes);
      const { volumeBytes, grewUnseen } = await refreshAtAttach(plugin, volume);
      logger.info({ vm, drive: drive.drive, volume, volumeBytes, grewUnseen, capBytes, bitmapBytes, virtualBytes: drive.virtualBytes }, 'watching thin drive');
      result.push({ config: { drive: drive.drive, volume, capBytes, policy }, volumeBytes, grewUnseen });
    }
    return result;
  }
}
