import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { initLoopDomain, LoopPlugin } from '../plugins/loop/index.js';
import { execaRunner } from '../src/util/runner.js';
import { GiB, MiB } from '../src/util/sizes.js';
import { commandEntryPoint } from '../src/cli/installation.js';
import { processCpuSeconds } from './process-cpu.js';
import { SimulatedQemu } from './simulated-qemu.js';

/**
 * Figure 5: one `tideline agent` process watching `drives` simulated QEMUs
 * over real QMP sockets. CPU (% of one core, from /proc) and RSS: idle in the
 * first minute after attaching, idle in the steady state after it, and while
 * `writers` of them write.
 *
 * The first minute is reported apart because it is not what an agent costs
 * all day: attaching 200 VMs compiles, optimises and allocates, and about
 * 40 s later V8's memory reducer runs three full collections to give the
 * start-up heap back (measured here with --trace-gc: "Mark-Compact (reduce)",
 * about 60 ms of CPU, once). A 10 s sample that happens to hold them read
 * 2.5 % where the steady state is under 1 %.
 */
export interface ScaleOutcome {
  /** Idle, over the first `settleSeconds` after the last VM was attached. */
  firstMinuteCpuPercent: number;
  /** Idle, over `sampleSeconds` after that. */
  idleCpuPercent: number;
  writingCpuPercent: number;
  rssMib: number;
  extensions: number;
}

async function cpuPercentOver(pid: number, seconds: number): Promise<number> {
  const before = await processCpuSeconds(pid);
  const started = performance.now();
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  return ((await processCpuSeconds(pid)) - before) / ((performance.now() - started) / 1000) * 100;
}

export async function agentScale(drives: number, writers: number, sampleSeconds: number, pollSeconds = 2, settleSeconds = 60): Promise<ScaleOutcome> {
  const dir = await mkdtemp('/var/tmp/tideline-bench-scale-');
  const vms: SimulatedQemu[] = [];
  let agent: ReturnType<typeof execa> | undefined;
  try {
    await initLoopDomain(path.join(dir, 'domain'), 64 * 1024 * GiB);
    const plugin = await LoopPlugin.open(path.join(dir, 'domain'), execaRunner);
    await mkdir(path.join(dir, 'qmp'));
    const qmpArgs: string[] = [];
    for (let index = 0; index < drives; index += 1) {
      await plugin.create(`vm${index}-vda`, 128 * MiB);
      const vm = new SimulatedQemu(path.join(dir, 'qmp', `vm${index}.qmp`), path.join(dir, 'domain', `vm${index}-vda.img`));
      await vm.listen();
      vms.push(vm);
      qmpArgs.push('--qmp', `vm${index}=${vm.socketPath}`);
    }
    agent = execa('node', [commandEntryPoint(), 'agent', ...qmpArgs, '--domain', path.join(dir, 'domain'), '--chunk', '128M', '--free-target', '96M', '--poll', String(pollSeconds), '--status-file', path.join(dir, 'status.json'), '--control-socket', path.join(dir, 'agent.sock')], {
      reject: false,
      env: { TIDELINE_LOG_LEVEL: 'info' },
    });
    let log = '';
    agent.stderr?.on('data', (chunk: Buffer) => (log += chunk.toString()));
    const deadline = Date.now() + 120_000;
    while ((log.match(/"monitoring VM"/g)?.length ?? 0) < drives) {
      if (Date.now() > deadline) throw new Error(`the agent attached to ${log.match(/"monitoring VM"/g)?.length ?? 0} of ${drives} VMs`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const pid = agent.pid!;
    const firstMinuteCpuPercent = await cpuPercentOver(pid, settleSeconds);
    const idleCpuPercent = await cpuPercentOver(pid, sampleSeconds);
    for (const vm of vms.slice(0, writers)) vm.startWriting(40);
    const writingCpuPercent = await cpuPercentOver(pid, sampleSeconds);
    const rss = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))?.[1];
    return { firstMinuteCpuPercent, idleCpuPercent, writingCpuPercent, rssMib: Number(rss) / 1024, extensions: log.match(/"volume extended"/g)?.length ?? 0 };
  } finally {
    agent?.kill('SIGTERM');
    await agent?.catch(() => undefined);
    for (const vm of vms) await vm.close();
    await rm(dir, { recursive: true, force: true });
  }
}
