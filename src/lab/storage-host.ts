import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { GuestAgentClient, guestRunner } from '../guest-agent/index.js';
import type { Runner } from '../util/runner.js';
import type { BootImage } from './boot-image.js';
import { STORAGE_HOST_MARKER, GUEST_AGENT_PORT } from './storage-host-init.js';

/**
 * One storage host: a TCG guest with device-mapper standing for a hypervisor
 * that sees the shared LUN. The LUN is a raw file on this machine attached
 * with `share-rw=on`, so several such guests see one disk as hosts of a
 * cluster see one LUN, and each has its own device-mapper tables. `run`
 * carries out commands inside the guest (through its QEMU guest agent), so
 * tideline's storage plugins can be pointed at a host without knowing it.
 */
export interface StorageHostOptions {
  name: string;
  workDir: string;
  boot: BootImage;
  /** The shared LUN (a raw image file): the guest's /dev/vda. */
  lunPath: string;
  memoryMib?: number;
  /** Kills QEMU after this long whatever happens. */
  timeoutMs: number;
  /** How long the guest may take to boot and answer through its agent. */
  bootTimeoutMs?: number;
}

const DEFAULT_MEMORY_MIB = 384;
const DEFAULT_BOOT_TIMEOUT_MS = 120_000;

export class StorageHost {
  readonly run: Runner;

  private constructor(
    readonly name: string,
    readonly consoleLog: string,
    private readonly qemu: ResultPromise,
    private readonly agent: GuestAgentClient,
  ) {
    this.run = guestRunner(agent);
  }

  get pid(): number | undefined {
    return this.qemu.pid;
  }

  static async start(options: StorageHostOptions): Promise<StorageHost> {
    const agentSocket = path.join(options.workDir, `${options.name}.qga.sock`);
    const consoleLog = path.join(options.workDir, `${options.name}.console.log`);
    // setpriv's parent-death signal: if this process dies without stopping the guest (a test runner's timeout
    // kills it), QEMU dies with it instead of burning a core for the rest of the run.
    const qemu = execa('setpriv', ['--pdeathsig', 'KILL', '--', 'qemu-system-x86_64', ...storageHostArguments(options, agentSocket, consoleLog)], {
      stdin: 'ignore',
      stdout: ['pipe', { file: `${consoleLog}.qemu` }],
      stderr: ['pipe', { file: `${consoleLog}.qemu` }],
      reject: false,
      timeout: options.timeoutMs,
    });
    try {
      const agent = await Promise.race([
        GuestAgentClient.connect(agentSocket, options.bootTimeoutMs ?? DEFAULT_BOOT_TIMEOUT_MS),
        qemu.then(async (result) => {
          throw new Error(`QEMU of storage host ${options.name} exited during boot (exit ${result.exitCode}): ${await tail(consoleLog)} ${result.stderr}`);
        }),
      ]);
      return new StorageHost(options.name, consoleLog, qemu, agent);
    } catch (error) {
      qemu.kill('SIGKILL');
      await qemu;
      throw new Error(`storage host ${options.name} did not come up: ${(error as Error).message}; console: ${await tail(consoleLog)}`, { cause: error });
    }
  }

  /** Stops the guest (by its QEMU's own PID) and waits for it; idempotent. */
  async stop(): Promise<void> {
    this.agent.close();
    this.qemu.kill('SIGKILL');
    await this.qemu.catch(() => undefined);
  }
}

export function storageHostArguments(options: StorageHostOptions, agentSocket: string, consoleLog: string): string[] {
  return [
    '-name', options.name,
    '-machine', 'q35',
    '-accel', 'tcg',
    '-smp', '1',
    '-m', String(options.memoryMib ?? DEFAULT_MEMORY_MIB),
    '-nodefaults', '-no-user-config',
    '-display', 'none',
    '-serial', `file:${consoleLog}`,
    '-no-reboot',
    '-kernel', options.boot.kernel,
    '-initrd', options.boot.initrd,
    '-append', 'console=ttyS0 quiet panic=-1',
    // No cache on this machine either: every host reads what another wrote, as from a SAN.
    '-blockdev', JSON.stringify({ driver: 'file', filename: options.lunPath, 'node-name': 'lun-file', cache: { direct: true }, aio: 'threads' }),
    '-blockdev', JSON.stringify({ driver: 'raw', file: 'lun-file', 'node-name': 'lun' }),
    '-device', 'virtio-blk-pci,drive=lun,id=lun,share-rw=on,serial=tideline-lun',
    '-chardev', `socket,id=agent,path=${agentSocket},server=on,wait=off`,
    '-device', 'virtio-serial-pci,id=serial',
    '-device', `virtserialport,chardev=agent,name=${GUEST_AGENT_PORT}`,
  ];
}

async function tail(file: string): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((line) => line.includes(STORAGE_HOST_MARKER) || /panic|error/i.test(line))
    .slice(-5)
    .join(' | ');
}
