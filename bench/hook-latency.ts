import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { detachLoopsUnder, initLoopDomain, LoopPlugin } from '../plugins/loop/index.js';
import { labDomainXml } from '../src/lab/libvirt-domain.js';
import { execaRunner } from '../src/util/runner.js';
import { GiB, MiB } from '../src/util/sizes.js';
import { summarize, type Summary } from './stats.js';

/**
 * The libvirt hook as libvirtd runs it (the built dist/src/hook/main.js, a new
 * node process per event): an event with nothing to do (agent down), and a
 * `prepare` that refreshes one volume. The baseline is starting node itself,
 * the floor for any hook written in JavaScript.
 */
const HOOK = path.resolve('dist/src/hook/main.js');

async function time(runs: number, command: string, args: string[], options: { input?: string; env?: Record<string, string> } = {}): Promise<Summary> {
  const samples: number[] = [];
  for (let run = 0; run < runs; run += 1) {
    const started = performance.now();
    const result = await execa(command, args, { reject: false, ...(options.input !== undefined ? { input: options.input } : {}), env: options.env ?? {} });
    samples.push(performance.now() - started);
    if (result.exitCode !== 0) throw new Error(`${command} ${args.join(' ')} failed: ${result.stderr}`);
  }
  return summarize(samples);
}

export async function hookLatency(runs: number): Promise<{ node: Summary; nothing: Summary; refresh: Summary }> {
  const dir = await mkdtemp('/var/tmp/tideline-bench-hook-');
  try {
    await initLoopDomain(path.join(dir, 'domain'), 16 * GiB);
    const plugin = await LoopPlugin.open(path.join(dir, 'domain'), execaRunner);
    await plugin.create('web-vda', 64 * MiB);
    const device = await plugin.activate('web-vda');
    const config = path.join(dir, 'tideline.conf');
    await writeFile(config, `loop-domain = ${path.join(dir, 'domain')}\ncontrol-socket = ${path.join(dir, 'agent.sock')}\n`);
    const env = { TIDELINE_CONFIG: config };
    const xml = labDomainXml({ name: 'web', boot: { kernel: '/k', initrd: '/i', kernelVersion: 'x' }, devicePath: device, consoleLog: '/dev/null', writeMib: 16 });
    return {
      node: await time(runs, process.execPath, ['-e', '0']),
      nothing: await time(runs, process.execPath, [HOOK, 'web', 'started', 'begin', '-'], { input: xml, env }),
      refresh: await time(runs, process.execPath, [HOOK, 'web', 'prepare', 'begin', '-'], { input: xml, env }),
    };
  } finally {
    await detachLoopsUnder(execaRunner, dir);
    await rm(dir, { recursive: true, force: true });
  }
}
