import { EventEmitter } from 'node:events';
import { createWriteStream } from 'node:fs';
import readline from 'node:readline';
import { execa, type ResultPromise } from 'execa';
import type { BootImage } from './boot-image.js';

/**
 * A lab QEMU: TCG, the lab kernel and initramfs, one virtio-blk drive on a
 * block device with werror=stop (as libvirt's error_policy='stop'), and QMP
 * sockets. Node names follow libvirt's pattern: <id>-storage under
 * <id>-format.
 */
export interface QemuLaunch {
  boot: BootImage;
  /** Block device holding the qcow2 image (loop device or LV). */
  devicePath: string;
  driveId: string;
  qmpSocket: string;
  /** A second QMP monitor standing for an administrator or another tool. */
  adminSocket?: string;
  consoleLog: string;
  writeMib: number;
  memoryMib?: number;
  /** Kills QEMU after this long whatever happens. */
  timeoutMs: number;
  /** Waits for a live migration on this URI (`-incoming`) instead of booting: the destination of a migration. */
  incoming?: string;
}

export interface QemuProcessEvents {
  line: [string];
}

export class QemuProcess extends EventEmitter<QemuProcessEvents> {
  readonly exited: Promise<{ exitCode: number | undefined; signal: string | undefined }>;
  private readonly child: ResultPromise;

  constructor(launch: QemuLaunch) {
    super();
    this.child = execa('qemu-system-x86_64', qemuArguments(launch), {
      stdin: 'ignore',
      buffer: false,
      reject: false,
      timeout: launch.timeoutMs,
      stderr: 'pipe',
    });
    const log = createWriteStream(launch.consoleLog, { flags: 'a' });
    const lines = readline.createInterface({ input: this.child.stdout! });
    lines.on('line', (line) => {
      log.write(`${line}\n`);
      this.emit('line', line);
    });
    this.child.stderr?.on('data', (chunk: Buffer) => log.write(chunk));
    this.exited = this.child.then((result) => {
      log.end();
      return { exitCode: result.exitCode, signal: result.signal };
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Stops this QEMU (by its own PID) and waits for it. */
  async kill(): Promise<void> {
    this.child.kill('SIGKILL');
    await this.exited;
  }
}

export function qemuArguments(launch: QemuLaunch): string[] {
  const id = launch.driveId;
  const args = [
    '-machine', 'q35',
    '-accel', 'tcg',
    '-smp', '1',
    '-m', String(launch.memoryMib ?? 256),
    '-nodefaults', '-no-user-config',
    '-display', 'none',
    '-serial', 'stdio',
    '-no-reboot',
    '-kernel', launch.boot.kernel,
    '-initrd', launch.boot.initrd,
    '-append', `console=ttyS0 quiet panic=-1 tideline.write_mib=${launch.writeMib}`,
    '-blockdev', JSON.stringify({ driver: 'host_device', filename: launch.devicePath, 'node-name': `${id}-storage`, cache: { direct: true } }),
    '-blockdev', JSON.stringify({ driver: 'qcow2', file: `${id}-storage`, 'node-name': `${id}-format` }),
    '-device', `virtio-blk-pci,drive=${id}-format,id=${id},werror=stop,rerror=stop`,
    '-qmp', `unix:${launch.qmpSocket},server=on,wait=off`,
  ];
  if (launch.adminSocket) args.push('-qmp', `unix:${launch.adminSocket},server=on,wait=off`);
  if (launch.incoming) args.push('-incoming', launch.incoming);
  return args;
}
