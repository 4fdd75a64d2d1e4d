import path from 'node:path';
import type { StoragePlugin } from '../../plugins/types.js';
import type { Runner } from '../util/runner.js';
import type { BootImage } from './boot-image.js';
import { parseGuestLine, type GuestLine } from './guest-report.js';
import { QemuProcess } from './qemu-process.js';
import { VIRTUAL_SIZE_TAG } from '../spm/validate.js';
import { withQmpSession, type QmpClient } from '../qmp/client.js';

/**
 * One lab guest on a fresh thin volume: the volume is created small, a qcow2
 * image with the full virtual size is written onto it, and QEMU starts writing.
 * Used by `tideline lab` and by the integration tests.
 */
export interface LabVmOptions {
  name: string;
  workDir: string;
  boot: BootImage;
  plugin: StoragePlugin;
  run: Runner;
  virtualBytes: number;
  initialBytes: number;
  writeMib: number;
  timeoutMs: number;
  /** Persistent dirty bitmaps put on the image before QEMU starts (as backup tools leave them), by granularity. */
  bitmapGranularities?: number[];
}

export interface GuestProgress {
  ready: boolean;
  writtenMib: number;
  writeSeconds: number | undefined;
  readSeconds: number | undefined;
  result: Extract<GuestLine, { kind: 'result' }> | undefined;
  mismatches: number;
  errors: string[];
}

export type GuestPhase = 'booting' | 'writing' | 'reading' | 'done';

const QEMU_IMG_TIMEOUT_MS = 30_000;
/** The lab guest's one disk, as QEMU and the guest name it. */
export const LAB_DRIVE = 'vda';

export class LabVm {
  readonly progress: GuestProgress = { ready: false, writtenMib: 0, writeSeconds: undefined, readSeconds: undefined, result: undefined, mismatches: 0, errors: [] };
  readonly qmpSocket: string;
  readonly adminSocket: string;
  readonly consoleLog: string;

  private constructor(
    readonly options: LabVmOptions,
    readonly volume: string,
    readonly devicePath: string,
    readonly qemu: QemuProcess,
  ) {
    this.qmpSocket = path.join(options.workDir, `${options.name}.qmp`);
    this.adminSocket = path.join(options.workDir, `${options.name}.admin.sock`);
    this.consoleLog = path.join(options.workDir, `${options.name}.console.log`);
    qemu.on('line', (line) => this.observe(parseGuestLine(line)));
  }

  static async create(options: LabVmOptions): Promise<LabVm> {
    const volume = `${options.name}-${LAB_DRIVE}`;
    // Tagged as `tideline volume create` does: the SPM's cap and a snapshot's new top read the virtual size from it.
    await options.plugin.create(volume, options.initialBytes, { vm: options.name, drive: LAB_DRIVE, [VIRTUAL_SIZE_TAG]: String(options.virtualBytes) });
    const devicePath = await options.plugin.activate(volume);
    await options.run('qemu-img', ['create', '-q', '-f', 'qcow2', devicePath, String(options.virtualBytes)], { timeoutMs: QEMU_IMG_TIMEOUT_MS });
    for (const [index, granularity] of (options.bitmapGranularities ?? []).entries()) {
      await options.run('qemu-img', ['bitmap', '--add', '-g', String(granularity), devicePath, `backup${index}`], { timeoutMs: QEMU_IMG_TIMEOUT_MS });
    }
    const qemu = new QemuProcess({
      boot: options.boot,
      devicePath,
      driveId: LAB_DRIVE,
      qmpSocket: path.join(options.workDir, `${options.name}.qmp`),
      adminSocket: path.join(options.workDir, `${options.name}.admin.sock`),
      consoleLog: path.join(options.workDir, `${options.name}.console.log`),
      writeMib: options.writeMib,
      timeoutMs: options.timeoutMs,
    });
    return new LabVm(options, volume, devicePath, qemu);
  }

  /** Resolves when the guest reported its result or QEMU ended. */
  async finished(): Promise<GuestProgress> {
    await this.qemu.exited;
    return this.progress;
  }

  /** The guest wrote and read everything back unchanged. */
  get verified(): boolean {
    const result = this.progress.result;
    return result !== undefined && result.bad === 0 && result.units > 0 && this.progress.errors.length === 0;
  }

  /** Where the guest is in its job, for progress displays. */
  get phase(): GuestPhase {
    if (this.progress.result) return 'done';
    if (!this.progress.ready) return 'booting';
    return this.progress.writeSeconds === undefined ? 'writing' : 'reading';
  }

  /**
   * Runs `work` on a QMP connection to the VM's admin socket (the one the
   * agent does not use), closed afterwards: QEMU serves one client per socket.
   */
  admin<T>(work: (client: QmpClient) => Promise<T>): Promise<T> {
    return withQmpSession(this.adminSocket, work);
  }

  /**
   * Caps the guest's write rate with QEMU's own I/O throttling, so that a test
   * which must act while the guest still writes does not depend on how fast
   * this machine runs TCG. The cap sits on the device and so outlives a
   * change of the drive's top layer.
   */
  async throttleWrites(bytesPerSecond: number): Promise<void> {
    await this.admin((client) => client.execute('block_set_io_throttle', {
      // virtio-blk-pci is a proxy; the block backend hangs off its inner virtio device.
      id: `/machine/peripheral/${LAB_DRIVE}/virtio-backend`, bps: 0, bps_rd: 0, bps_wr: bytesPerSecond, iops: 0, iops_rd: 0, iops_wr: 0,
    }));
  }

  /** Kills QEMU and releases the volume; idempotent, safe after a failure. */
  async destroy(): Promise<void> {
    await this.qemu.kill();
    await this.options.plugin.remove(this.volume).catch(() => undefined);
  }

  private observe(line: GuestLine | undefined): void {
    if (!line) return;
    switch (line.kind) {
      case 'ready':
        this.progress.ready = true;
        return;
      case 'progress':
        this.progress.writtenMib = line.writtenMib;
        return;
      case 'written':
        this.progress.writeSeconds = line.seconds;
        this.progress.writtenMib = this.options.writeMib;
        return;
      case 'mismatch':
        this.progress.mismatches += 1;
        return;
      case 'result':
        this.progress.result = line;
        return;
      case 'error':
        this.progress.errors.push(line.detail);
        return;
      case 'read':
        this.progress.readSeconds = line.seconds;
        return;
    }
  }
}
