import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { PrivateLibvirtd } from '../../../src/lab/private-libvirtd.js';
import type { Workspace } from '../../../src/lab/workspace.js';
import { builtCli } from './built-cli.js';

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
 * hooks only then). The daemon itself is a PrivateLibvirtd (src/lab).
 * `stop` destroys this host's domains, then stops libvirtd by its PID; a
 * crashed run's libvirtd and QEMUs are swept by the workspace (their command
 * lines name its directory).
 */
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
  private constructor(
    readonly name: string,
    readonly base: string,
    private readonly daemon: PrivateLibvirtd,
    private readonly workspace: Workspace,
  ) {}

  get pid(): number {
    return this.daemon.pid;
  }

  /** From any namespace: libvirtd's socket under this host's own run directory. */
  get uri(): string {
    return this.daemon.uri;
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
    const tidelineDir = path.join(base, 'etc', 'tideline');
    await mkdir(tidelineDir, { recursive: true });
    await writeFile(path.join(tidelineDir, 'tideline.conf'), spec.tidelineConfig);
    const installed = await execa('node', [builtCli(), 'hook', 'install', '--root', base, '--spool', path.join(base, 'hook-events'), '--config', path.join(tidelineDir, 'tideline.conf')], { reject: false, timeout: 30_000 });
    if (installed.exitCode !== 0) throw new Error(`hook install for host ${spec.name} failed: ${installed.stderr}`);
    const daemon = await PrivateLibvirtd.start({ base, hostname: `tl-host${spec.name}`, uuid: spec.uuid, ...(spec.binds ? { binds: spec.binds } : {}), onStart: (pid) => workspace.recordPid(`libvirtd-${spec.name}`, pid) });
    return new LibvirtHost(spec.name, base, daemon, workspace);
  }

  /** libvirtd in a new namespace with the same binds (PrivateLibvirtd.startDaemon); processes inside the previous namespace (the agent) see the same directories there. */
  startDaemon(): Promise<void> {
    return this.daemon.startDaemon();
  }

  /** kill -9 of this host's libvirtd (ours: started by startDaemon), leaving its QEMUs running. */
  killDaemon(): Promise<void> {
    return this.daemon.killDaemon();
  }

  virsh(...args: string[]): ReturnType<PrivateLibvirtd['virsh']> {
    return this.daemon.virsh(...args);
  }

  /** Records the QEMU of a domain running here, so a crashed run's sweep stops it. */
  async recordQemu(domain: string): Promise<void> {
    const pid = Number(await readFile(path.join(this.base, 'run', 'qemu', `${domain}.pid`), 'utf8').catch(() => ''));
    if (pid) await this.workspace.recordPid(`qemu-${this.name}-${domain}`, pid);
  }

  stop(): Promise<void> {
    return this.daemon.stop();
  }
}
