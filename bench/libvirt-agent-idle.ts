import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { PrivateLibvirtd } from '../src/lab/private-libvirtd.js';
import { DIRECT_UNUSABLE_MESSAGE } from '../src/libvirt/remote/direct-libvirt.js';
import { Workspace } from '../src/lab/workspace.js';
import { execaRunner } from '../src/util/runner.js';
import { GiB, MiB } from '../src/util/sizes.js';
import { commandEntryPoint } from '../src/cli/installation.js';
import { treeCpuSeconds } from './process-cpu.js';

/**
 * Figure 5, under libvirt: one `tideline agent --libvirt` watching `domains`
 * domains of a libvirtd (the benchmark's own), each with one thin disk, at
 * the default 5 s safety poll, while nothing is written. The domains are
 * real QEMUs started paused: they cost no CPU themselves, and the agent polls
 * a paused domain exactly as a running one. Measured: the CPU of the agent
 * with every process it started (the virsh it runs and waits for, its
 * `virsh event` stream), and of libvirtd, which answers every question
 * either way. With `--no-libvirt-socket` the agent asks everything through
 * virsh, as it did before the socket.
 */
export interface LibvirtIdleOutcome {
  agentPercent: number;
  libvirtdPercent: number;
  domains: number;
}

export async function libvirtAgentIdle(options: { domains: number; settleSeconds: number; sampleSeconds: number; socket: boolean }): Promise<LibvirtIdleOutcome> {
  const workspace = await Workspace.create({ prefix: 'tideline-bench-libvirt-agent-', capacityBytes: 64 * GiB, run: execaRunner });
  let daemon: PrivateLibvirtd | undefined;
  let agent: ReturnType<typeof execa> | undefined;
  try {
    daemon = await PrivateLibvirtd.inWorkspace(workspace, { hostname: 'tl-bench-agent', uuid: '7d1e0c5a-0000-4000-8000-0000000000b2' });
    for (let index = 0; index < options.domains; index += 1) {
      const name = `idle${index}`;
      await workspace.plugin.create(`${name}-vda`, 64 * MiB, { vm: name });
      const device = await workspace.plugin.activate(`${name}-vda`);
      await execaRunner('qemu-img', ['create', '-q', '-f', 'qcow2', device, String(GiB)]);
      const xml = path.join(workspace.dir, `${name}.xml`);
      await writeFile(xml, `<domain type='qemu'><name>${name}</name><memory>65536</memory><os><type arch='x86_64'>hvm</type></os><devices><disk type='block' device='disk'><driver name='qemu' type='qcow2' cache='none' error_policy='stop'/><source dev='${device}'/><target dev='vda' bus='virtio'/></disk><serial type='file'><source path='${path.join(workspace.dir, `${name}.console`)}'/></serial></devices></domain>`);
      const created = await daemon.virsh('create', '--paused', xml);
      if (created.exitCode !== 0) throw new Error(`starting domain ${name} failed: ${created.stderr}`);
      // Its command line names the workspace (the console file): a crashed run's sweep stops it.
      await workspace.recordPid(`qemu-${name}`, Number(await readFile(path.join(workspace.dir, 'libvirtd', 'run', 'qemu', `${name}.pid`), 'utf8').catch(() => '')));
    }
    await mkdir(path.join(workspace.dir, 'hook-events'));
    agent = execa(
      process.execPath,
      [
        commandEntryPoint(), 'agent', '--libvirt', '--uri', daemon.uri, '--domain', workspace.domainDir, '--poll', '5',
        '--chunk', '64M', '--free-target', '32M',
        '--status-file', path.join(workspace.dir, 'status.json'), '--control-socket', path.join(workspace.dir, 'agent.sock'), '--hook-spool', path.join(workspace.dir, 'hook-events'),
        ...(options.socket ? [] : ['--no-libvirt-socket']),
      ],
      { reject: false, env: { TIDELINE_LOG_LEVEL: 'info', TIDELINE_CONFIG: '/nonexistent' } },
    );
    await workspace.recordPid('agent', agent.pid);
    let log = '';
    agent.stderr?.on('data', (chunk: Buffer) => (log += chunk.toString()));
    const deadline = Date.now() + 120_000;
    while ((log.match(/"monitoring VM"/g)?.length ?? 0) < options.domains) {
      if (agent.exitCode !== null || Date.now() > deadline) throw new Error(`the agent attached to ${log.match(/"monitoring VM"/g)?.length ?? 0} of ${options.domains} domains:\n${log.slice(-3000)}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    await new Promise((resolve) => setTimeout(resolve, options.settleSeconds * 1000));
    const agentBefore = await treeCpuSeconds(agent.pid!);
    const libvirtdBefore = await treeCpuSeconds(daemon.pid);
    const started = performance.now();
    await new Promise((resolve) => setTimeout(resolve, options.sampleSeconds * 1000));
    const elapsed = (performance.now() - started) / 1000;
    const agentPercent = ((await treeCpuSeconds(agent.pid!)) - agentBefore) / elapsed * 100;
    const libvirtdPercent = ((await treeCpuSeconds(daemon.pid)) - libvirtdBefore) / elapsed * 100;
    if (options.socket && log.includes(DIRECT_UNUSABLE_MESSAGE)) throw new Error(`the agent fell back to virsh:\n${log.slice(-3000)}`);
    return { agentPercent, libvirtdPercent, domains: options.domains };
  } finally {
    if (agent?.pid) {
      agent.kill('SIGTERM');
      await Promise.race([agent, new Promise((resolve) => setTimeout(resolve, 10_000))]);
    }
    await daemon?.stop();
    await workspace.dispose();
  }
}
