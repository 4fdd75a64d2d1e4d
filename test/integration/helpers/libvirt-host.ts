import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { isAlive } from '../../../src/util/process-alive.js';
import type { Workspace } from '../../../src/lab/workspace.js';
import { until } from './watch.js';

/**
 * One hypervisor of a two-host cluster on this machine: a libvirtd of its own
 * in a private mount and UTS namespace (its own hostname, host UUID, run,
 * state, cache, log and config directories), so two of them can live-migrate
 * a domain to each other over loopback exactly as two hosts would. Extra bind
 * mounts give the host its own view of shared paths (the lab's per-host loop
 * devices under the one name every host uses, as /dev/VG/LV). The host's
 * tideline.conf lives in its directory: its hook is installed to read it
 * there, and everything run through `prefix` finds it in TIDELINE_CONFIG.
 *
 * The tideline hook is installed before libvirtd starts (libvirtd looks for
 * hooks only then). cgroups are off: two libvirtds would otherwise give two
 * domains the same cgroup. QEMU runs as root and libvirt changes no file's
 * owner: the lab's kernel and initrd are shared with the system libvirtd,
 * which refuses a file another libvirtd has labelled. `stop` destroys this host's domains, then stops
 * libvirtd by its PID; a crashed run's libvirtd and QEMUs are swept by the
 * workspace (their command lines name its directory).
 */
const NAMESPACE_SCRIPT = `set -e
hostname "$1"
pidfile=$2
shift 2
while [ "$#" -gt 0 ]; do mount --bind "$1" "$2"; shift 2; done
exec libvirtd --pid-file "$pidfile"
`;

export interface LibvirtHostSpec {
  name: string;
  /** libvirt refuses to migrate to a host with its own UUID. */
  uuid: string;
  /** tideline.conf for this host. */
  tidelineConfig: string;
  /** [own directory, path it appears at inside this host]. */
  binds?: Array<[string, string]>;
}

export class LibvirtHost {
  private daemon!: ResultPromise;

  private constructor(
    readonly name: string,
    readonly base: string,
    private readonly binds: Array<[string, string]>,
    private readonly workspace: Workspace,
  ) {}

  get pid(): number {
    return this.daemon.pid!;
  }

  /** From any namespace: libvirtd's socket under this host's own run directory. */
  get uri(): string {
    return `qemu+unix:///system?socket=${path.join(this.base, 'run', 'libvirt-sock')}`;
  }

  get hookSpool(): string {
    return path.join(this.base, 'hook-events');
  }

  get configFile(): string {
    return path.join(this.base, 'etc', 'tideline', 'tideline.conf');
  }

  /** Runs the rest of a command line inside this host's namespaces, with this host's tideline.conf. */
  get prefix(): string[] {
    return ['nsenter', '--target', String(this.pid), '--mount', '--uts', `--wd=${process.cwd()}`, '--', 'env', `TIDELINE_CONFIG=${this.configFile}`];
  }

  static async start(workspace: Workspace, spec: LibvirtHostSpec): Promise<LibvirtHost> {
    const base = path.join(workspace.dir, `host-${spec.name}`);
    const dirs = { run: path.join(base, 'run'), lib: path.join(base, 'lib'), cache: path.join(base, 'cache'), log: path.join(base, 'log'), etc: path.join(base, 'etc', 'libvirt'), tideline: path.join(base, 'etc', 'tideline') };
    for (const dir of Object.values(dirs)) await mkdir(dir, { recursive: true });
    await mkdir(path.join(dirs.lib, 'qemu'), { recursive: true });
    await mkdir(path.join(dirs.log, 'qemu'), { recursive: true });
    await writeFile(path.join(dirs.etc, 'libvirtd.conf'), `host_uuid = "${spec.uuid}"\n`);
    await writeFile(path.join(dirs.etc, 'qemu.conf'), 'stdio_handler = "file"\ncgroup_controllers = [ ]\nuser = "root"\ngroup = "root"\ndynamic_ownership = 0\nremember_owner = 0\n');
    await writeFile(path.join(dirs.tideline, 'tideline.conf'), spec.tidelineConfig);
    const installed = await execa('node', ['--import', 'tsx', 'src/cli/main.ts', 'hook', 'install', '--root', base, '--spool', path.join(base, 'hook-events'), '--config', path.join(dirs.tideline, 'tideline.conf')], { reject: false, timeout: 30_000 });
    if (installed.exitCode !== 0) throw new Error(`hook install for host ${spec.name} failed: ${installed.stderr}`);

    const binds: Array<[string, string]> = [
      [dirs.run, '/run/libvirt'], [dirs.lib, '/var/lib/libvirt'], [dirs.cache, '/var/cache/libvirt'], [dirs.log, '/var/log/libvirt'], [dirs.etc, '/etc/libvirt'],
      ...(spec.binds ?? []),
    ];
    await mkdir('/run/libvirt', { recursive: true });
    const host = new LibvirtHost(spec.name, base, binds, workspace);
    await host.startDaemon();
    return host;
  }

  /**
   * libvirtd in a new namespace with the same binds: QEMUs it started before keep running and are
   * found again through the run directory, as after a restart of the real service. Processes
   * already inside the previous namespace (the agent) see the same directories there.
   */
  async startDaemon(): Promise<void> {
    const pidFile = path.join(this.base, 'libvirtd.pid');
    const log = path.join(this.base, 'libvirtd.log');
    const daemon = execa('unshare', ['--mount', '--uts', '--propagation', 'private', 'sh', '-c', NAMESPACE_SCRIPT, 'sh', `tl-host${this.name}`, pidFile, ...this.binds.flat()], {
      reject: false,
      stdout: { file: log, append: true },
      stderr: { file: log, append: true },
    });
    this.daemon = daemon;
    await this.workspace.recordPid(`libvirtd-${this.name}`, daemon.pid);
    await until(async () => {
      if (daemon.exitCode !== null) throw new Error(`libvirtd of host ${this.name} exited: ${await readFile(log, 'utf8').catch(() => '')}`);
      return (await this.virsh('version')).exitCode === 0;
    }, 30_000, `libvirtd of host ${this.name} to answer`);
  }

  /** kill -9 of this host's libvirtd (ours: started by startDaemon), leaving its QEMUs running. */
  async killDaemon(): Promise<void> {
    this.daemon.kill('SIGKILL');
    await this.daemon;
  }

  virsh(...args: string[]) {
    return execa('virsh', ['-c', this.uri, ...args], { reject: false, timeout: 60_000 });
  }

  /** Records the QEMU of a domain running here, so a crashed run's sweep stops it. */
  async recordQemu(domain: string): Promise<void> {
    const pid = Number(await readFile(path.join(this.base, 'run', 'qemu', `${domain}.pid`), 'utf8').catch(() => ''));
    if (pid) await this.workspace.recordPid(`qemu-${this.name}-${domain}`, pid);
  }

  async stop(): Promise<void> {
    const names = (await this.virsh('list', '--all', '--name')).stdout.split('\n').map((line) => line.trim()).filter(Boolean);
    for (const name of names) await this.virsh('destroy', name);
    if (this.daemon.pid && isAlive(this.daemon.pid)) this.daemon.kill('SIGTERM');
    await Promise.race([this.daemon, new Promise((resolve) => setTimeout(resolve, 10_000))]);
    if (this.daemon.pid && isAlive(this.daemon.pid)) this.daemon.kill('SIGKILL');
    await rm(path.join(this.base, 'run'), { recursive: true, force: true }).catch(() => undefined);
  }
}
