import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { isAlive } from '../util/process-alive.js';
import type { Workspace } from './workspace.js';

/**
 * A libvirtd of its own on this machine, beside the system's: in a private
 * mount and UTS namespace with its own run, state, cache, log and config
 * directories under `base` bound over libvirt's fixed paths (a second
 * privileged libvirtd on the same paths would refuse to start). Reached from
 * any namespace at `uri`. The tests' two-host clusters and the benchmark's
 * `policy show` figure use it; it starts no domain by itself.
 */
const NAMESPACE_SCRIPT = `set -e
hostname "$1"
pidfile=$2
shift 2
while [ "$#" -gt 0 ]; do mount --bind "$1" "$2"; shift 2; done
exec libvirtd --pid-file "$pidfile"
`;

const ANSWER_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;

export interface PrivateLibvirtdSpec {
  /** Directory for the daemon's own paths; its command line names it (a crashed run's sweep finds it by that). */
  base: string;
  hostname: string;
  /** libvirt refuses to migrate to a host with its own UUID. */
  uuid: string;
  /** [own directory, path it appears at inside the namespace]. */
  binds?: Array<[string, string]>;
  /** Called with the daemon's PID each time it starts, so a crashed run can be swept. */
  onStart?: (pid: number | undefined) => Promise<void>;
}

export class PrivateLibvirtd {
  private daemon!: ResultPromise;

  private constructor(
    private readonly spec: PrivateLibvirtdSpec,
    private readonly binds: Array<[string, string]>,
  ) {}

  get pid(): number {
    return this.daemon.pid!;
  }

  get uri(): string {
    return `qemu+unix:///system?socket=${path.join(this.spec.base, 'run', 'libvirt-sock')}`;
  }

  /** A daemon in `workspace` (directory `libvirtd`), its PID recorded there so that a crashed run's sweep stops it. */
  static inWorkspace(workspace: Workspace, spec: { hostname: string; uuid: string }): Promise<PrivateLibvirtd> {
    return PrivateLibvirtd.start({ base: path.join(workspace.dir, 'libvirtd'), ...spec, onStart: (pid) => workspace.recordPid('libvirtd', pid) });
  }

  static async start(spec: PrivateLibvirtdSpec): Promise<PrivateLibvirtd> {
    const dirs = { run: path.join(spec.base, 'run'), lib: path.join(spec.base, 'lib'), cache: path.join(spec.base, 'cache'), log: path.join(spec.base, 'log'), etc: path.join(spec.base, 'etc', 'libvirt') };
    for (const dir of Object.values(dirs)) await mkdir(dir, { recursive: true });
    await mkdir(path.join(dirs.lib, 'qemu'), { recursive: true });
    await mkdir(path.join(dirs.log, 'qemu'), { recursive: true });
    await writeFile(path.join(dirs.etc, 'libvirtd.conf'), `host_uuid = "${spec.uuid}"\n`);
    // QEMU as root and no relabelling: the lab's kernel and initrd are shared with the system libvirtd, which refuses a file another libvirtd labelled; cgroups off, or two daemons would give two domains one cgroup.
    await writeFile(path.join(dirs.etc, 'qemu.conf'), 'stdio_handler = "file"\ncgroup_controllers = [ ]\nuser = "root"\ngroup = "root"\ndynamic_ownership = 0\nremember_owner = 0\n');
    const binds: Array<[string, string]> = [[dirs.run, '/run/libvirt'], [dirs.lib, '/var/lib/libvirt'], [dirs.cache, '/var/cache/libvirt'], [dirs.log, '/var/log/libvirt'], [dirs.etc, '/etc/libvirt'], ...(spec.binds ?? [])];
    await mkdir('/run/libvirt', { recursive: true });
    const daemon = new PrivateLibvirtd(spec, binds);
    await daemon.startDaemon();
    return daemon;
  }

  /**
   * libvirtd in a new namespace with the same binds: QEMUs it started before keep running and are
   * found again through the run directory, as after a restart of the real service.
   */
  async startDaemon(): Promise<void> {
    const pidFile = path.join(this.spec.base, 'libvirtd.pid');
    const log = path.join(this.spec.base, 'libvirtd.log');
    const daemon = execa('unshare', ['--mount', '--uts', '--propagation', 'private', 'sh', '-c', NAMESPACE_SCRIPT, 'sh', this.spec.hostname, pidFile, ...this.binds.flat()], {
      reject: false,
      stdout: { file: log, append: true },
      stderr: { file: log, append: true },
    });
    this.daemon = daemon;
    await this.spec.onStart?.(daemon.pid);
    const deadline = Date.now() + ANSWER_TIMEOUT_MS;
    for (;;) {
      if (daemon.exitCode !== null) throw new Error(`libvirtd under ${this.spec.base} exited: ${await readFile(log, 'utf8').catch(() => '')}`);
      if ((await this.virsh('version')).exitCode === 0) return;
      if (Date.now() > deadline) throw new Error(`libvirtd under ${this.spec.base} did not answer within ${ANSWER_TIMEOUT_MS / 1000} s; see ${log}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** kill -9 (ours: started by startDaemon), leaving its QEMUs running. */
  async killDaemon(): Promise<void> {
    this.daemon.kill('SIGKILL');
    await this.daemon;
  }

  /** virsh against this daemon; never throws (the caller reads the exit code). */
  async virsh(...args: string[]): Promise<{ exitCode: number | undefined; stdout: string; stderr: string }> {
    const { exitCode, stdout, stderr } = await execa('virsh', ['-c', this.uri, ...args], { reject: false, timeout: 60_000 });
    return { exitCode, stdout, stderr };
  }

  /** Destroys its running domains, stops the daemon by its PID, and removes its run directory. */
  async stop(): Promise<void> {
    const names = (await this.virsh('list', '--all', '--name')).stdout.split('\n').map((line) => line.trim()).filter(Boolean);
    for (const name of names) await this.virsh('destroy', name);
    if (this.daemon.pid && isAlive(this.daemon.pid)) this.daemon.kill('SIGTERM');
    await Promise.race([this.daemon, new Promise((resolve) => setTimeout(resolve, STOP_TIMEOUT_MS))]);
    if (this.daemon.pid && isAlive(this.daemon.pid)) this.daemon.kill('SIGKILL');
    await rm(path.join(this.spec.base, 'run'), { recursive: true, force: true }).catch(() => undefined);
  }
}
