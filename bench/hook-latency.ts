import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { detachLoopsUnder, initLoopDomain, LoopPlugin } from '../plugins/loop/index.js';
import { serveControl } from '../src/agent/control-server.js';
import { HookSpool } from '../src/agent/hook-spool.js';
import { DirectExtender } from '../src/agent/direct-extender.js';
import { writeStatus } from '../src/agent/status-file.js';
import { volumeService } from '../src/agent/volume-service.js';
import { silentLogger } from '../src/log/logger.js';
import { hookScript } from '../src/cli/commands/hook.js';
import { commandEntryPoint } from '../src/cli/installation.js';
import { labDomainXml } from '../src/lab/libvirt-domain.js';
import { PrivateLibvirtd } from '../src/lab/private-libvirtd.js';
import { Workspace } from '../src/lab/workspace.js';
import { TIDELINE_NAMESPACE } from '../src/libvirt/policy-reader.js';
import { Virsh } from '../src/libvirt/virsh.js';
import { execaRunner } from '../src/util/runner.js';
import { GiB, MiB } from '../src/util/sizes.js';
import { summarize, type Summary } from './stats.js';

/**
 * The libvirt hook as libvirtd runs it: the installed shell script (hooks/qemu
 * pointing at the built dist), a new process per event. Measured: an event
 * handed to a running agent's spool, `prepare` for a domain with no thin disk,
 * and `prepare` refreshing one volume. The baseline is starting node itself,
 * the floor for a hook that runs JavaScript on every event.
 */
async function time(runs: number, command: string, args: string[], options: { input?: string; env?: Record<string, string> } = {}): Promise<Summary> {
  const samples: number[] = [];
  for (let run = 0; run < runs; run += 1) {
    const started = performance.now();
    const result = await execa(command, args, { reject: false, ...(options.input !== undefined ? { input: options.input } : {}), env: options.env ?? {}, extendEnv: false });
    samples.push(performance.now() - started);
    if (result.exitCode !== 0) throw new Error(`${command} ${args.join(' ')} failed: ${result.stderr}`);
  }
  return summarize(samples);
}

export interface HookLatency {
  node: Summary;
  event: Summary;
  prepareNothing: Summary;
  prepareRefresh: Summary;
  /** The same with an agent listening on the control socket only (no spool): node hands it the work. */
  prepareViaAgent: Summary;
  /** The same with an agent following the hook spool, as `tideline agent --libvirt` does: no node start. */
  prepareViaSpool: Summary;
  /** `tideline --version` and `tideline status` from the built dist, as an admin runs them. */
  cliVersion: Summary;
  cliStatus: Summary;
  /** `tideline policy show` of a domain defined in a libvirtd (one of the benchmark's own), as an admin runs it: tideline asks the daemon over its socket. */
  cliPolicyShow: Summary;
  /** The same through virsh: a domain in libvirt's test driver (loaded from a file), which only virsh can open. */
  cliPolicyShowViaVirsh: Summary;
  /** Node starting that same `virsh metadata` and nothing else: the floor under any `policy show` that asks virsh. */
  nodeRunningVirsh: Summary;
}

export async function hookLatency(runs: number): Promise<HookLatency> {
  const dir = await mkdtemp('/var/tmp/tideline-bench-hook-');
  try {
    await initLoopDomain(path.join(dir, 'domain'), 16 * GiB);
    const plugin = await LoopPlugin.open(path.join(dir, 'domain'), execaRunner);
    await plugin.create('web-vda', 64 * MiB);
    const device = await plugin.activate('web-vda');
    const config = path.join(dir, 'tideline.conf');
    await writeFile(config, `loop-domain = ${path.join(dir, 'domain')}\n`);
    const spool = path.join(dir, 'hook-events');
    await mkdir(spool);
    const hook = path.join(dir, 'hook');
    await writeFile(hook, await hookScript({ spool }));
    await chmod(hook, 0o755);
    const env = { TIDELINE_CONFIG: config, PATH: process.env.PATH ?? '/usr/bin:/bin' };
    const cli = commandEntryPoint();
    const statusFile = path.join(dir, 'status.json');
    // What an admin sees on a host running VMs: two VMs with two thin drives each, drawn as a table.
    const drive = (name: string, volume: string) => ({ drive: name, volume, phase: 'ok' as const, highWaterBytes: 300 * MiB, volumeBytes: GiB, thresholdBytes: 768 * MiB, capBytes: 20 * GiB, extensions: 3, lastExtensionMs: 12, writeBytesPerSecond: 4 * MiB, error: null });
    const vm = (name: string) => ({ vm: name, pausedForNoSpace: false, pauses: 0, pausedMsTotal: 0, lastResumeMs: null, migration: null, lastArrivalMs: null, drives: [drive('vda', `${name}-vda`), drive('vdb', `${name}-vdb`)] });
    await writeStatus(statusFile, [vm('web'), vm('db')]);
    const xmlFor = (devicePath: string) => labDomainXml({ name: 'web', boot: { kernel: '/k', initrd: '/i', kernelVersion: 'x' }, devicePath, consoleLog: '/dev/null', writeMib: 16 });
    const socket = path.join(dir, 'agent.sock');
    const withAgent = path.join(dir, 'with-agent.conf');
    await writeFile(withAgent, `loop-domain = ${path.join(dir, 'domain')}\ncontrol-socket = ${socket}\n`);
    const libvirtNode = path.join(dir, 'libvirt-test-node.xml');
    await writeFile(libvirtNode, `<node><domain type='test'><name>web</name><memory>65536</memory><os><type>hvm</type></os><metadata><tl:thin xmlns:tl='${TIDELINE_NAMESPACE}' chunk='1G' free-target='512M'><tl:drive target='vdb' enabled='no'/></tl:thin></metadata></domain></node>`);
    // The exact command `policy show` runs, as Virsh builds it.
    let virshMetadata: readonly string[] = [];
    await new Virsh(async (_command, args) => ((virshMetadata = args), { stdout: '', stderr: '', exitCode: 0 }), `test://${libvirtNode}`).metadata('web', TIDELINE_NAMESPACE);
    const volumes = volumeService({ plugin, logger: silentLogger, extender: new DirectExtender(plugin), run: execaRunner });
    const agent = await serveControl(socket, volumes, silentLogger);
    const libvirtd = await libvirtdWithPolicyDomain(libvirtNode);
    try {
      const result = {
        node: await time(runs, process.execPath, ['-e', '0']),
        event: await time(runs, hook, ['web', 'started', 'begin', '-'], { input: xmlFor(device), env }),
        prepareNothing: await time(runs, hook, ['web', 'prepare', 'begin', '-'], { input: xmlFor('/var/lib/libvirt/images/web.qcow2'), env }),
        prepareRefresh: await time(runs, hook, ['web', 'prepare', 'begin', '-'], { input: xmlFor(device), env }),
        prepareViaAgent: await time(runs, hook, ['web', 'prepare', 'begin', '-'], { input: xmlFor(device), env: { ...env, TIDELINE_CONFIG: withAgent } }),
        prepareViaSpool: await withSpool(spool, volumes.prepareDomain, () => time(runs, hook, ['web', 'prepare', 'begin', '-'], { input: xmlFor(device), env: { ...env, TIDELINE_CONFIG: withAgent } })),
        cliVersion: await time(runs, process.execPath, [cli, '--version'], { env }),
        cliStatus: await time(runs, process.execPath, [cli, 'status', '--file', statusFile], { env }),
        cliPolicyShow: await time(runs, process.execPath, [cli, 'policy', 'show', 'web', '--uri', libvirtd.daemon.uri], { env }),
        cliPolicyShowViaVirsh: await time(runs, process.execPath, [cli, 'policy', 'show', 'web', '--uri', `test://${libvirtNode}`], { env }),
        nodeRunningVirsh: await time(runs, process.execPath, ['-e', `require('node:child_process').spawnSync('virsh', ${JSON.stringify(virshMetadata)}, { stdio: 'pipe' })`], { env }),
      };
      agent.close();
      return result;
    } finally {
      await libvirtd.stop();
    }
  } finally {
    await detachLoopsUnder(execaRunner, dir);
    await rm(dir, { recursive: true, force: true });
  }
}

async function withSpool<T>(directory: string, prepare: Parameters<typeof HookSpool.watch>[3], measure: () => Promise<T>): Promise<T> {
  const spool = await HookSpool.watch(directory, () => Promise.resolve(), silentLogger, prepare);
  try {
    return await measure();
  } finally {
    await spool.close();
  }
}

/**
 * A libvirtd of the benchmark's own (src/lab/private-libvirtd.ts: the system's
 * may be absent, or restarted by the tests running beside `bench --quick`)
 * with the test node's domain defined in it, not started.
 */
async function libvirtdWithPolicyDomain(testNode: string): Promise<{ daemon: PrivateLibvirtd; stop(): Promise<void> }> {
  const workspace = await Workspace.create({ prefix: 'tideline-bench-libvirtd-', capacityBytes: GiB, run: execaRunner });
  try {
    const daemon = await PrivateLibvirtd.inWorkspace(workspace, { hostname: 'tl-bench', uuid: '7d1e0c5a-0000-4000-8000-0000000000b1' });
    const domain = path.join(workspace.dir, 'web.xml');
    const node = await readFile(testNode, 'utf8');
    await writeFile(domain, node.slice(node.indexOf('<domain'), node.lastIndexOf('</domain>') + '</domain>'.length).replace("type='test'", "type='qemu'"));
    const defined = await daemon.virsh('define', domain);
    if (defined.exitCode !== 0) throw new Error(`defining the policy show domain failed: ${defined.stderr}`);
    return {
      daemon,
      stop: async () => {
        await daemon.stop();
        await workspace.dispose();
      },
    };
  } catch (error) {
    await workspace.dispose();
    throw error;
  }
}
