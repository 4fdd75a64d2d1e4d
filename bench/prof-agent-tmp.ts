import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { initLoopDomain, LoopPlugin } from '../plugins/loop/index.js';
import { execaRunner } from '../src/util/runner.js';
import { GiB, MiB } from '../src/util/sizes.js';
import { SimulatedQemu } from './simulated-qemu.js';

const drives = 200;
const dir = await mkdtemp('/var/tmp/tideline-prof-');
const vms: SimulatedQemu[] = [];
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
const agent = execa('node', [path.resolve('dist/src/cli/main.js'), 'agent', ...qmpArgs, '--domain', path.join(dir, 'domain'), '--chunk', '128M', '--free-target', '96M', '--poll', process.argv[2] ?? '2', '--status-file', path.join(dir, 'status.json'), '--control-socket', path.join(dir, 'agent.sock')], { reject: false, env: { TIDELINE_LOG_LEVEL: 'info' } });
let lines: string[] = [];
agent.stderr?.on('data', (chunk: Buffer) => lines.push(...chunk.toString().split('\n').filter(Boolean)));
const stat = async () => { const f = (await readFile(`/proc/${agent.pid}/stat`, 'utf8')).split(') ')[1]!.split(' '); return (Number(f[11]) + Number(f[12])) / 100; };
await new Promise((r) => setTimeout(r, 40_000));
const { readdir } = await import('node:fs/promises');
const tasks = async () => { const m = new Map<string, number>(); for (const t of await readdir(`/proc/${agent.pid}/task`)) { const raw = await readFile(`/proc/${agent.pid}/task/${t}/stat`, 'utf8').catch(() => ''); if (!raw) continue; const name = raw.slice(raw.indexOf('(') + 1, raw.lastIndexOf(')')); const f = raw.split(') ')[1]!.split(' '); m.set(`${t} ${name}`, (Number(f[11]) + Number(f[12])) / 100); } return m; };
const before = await stat();
const t0 = await tasks();
lines = [];
await new Promise((r) => setTimeout(r, 30_000));
const t1 = await tasks();
const counts = new Map<string, number>(); for (const l of lines) { const m = /"msg":"([^"]+)"/.exec(l)?.[1] ?? l.slice(0, 60); counts.set(m, (counts.get(m) ?? 0) + 1); }
console.log([...counts].sort((a, b) => b[1] - a[1]).slice(0, 8));
console.log('idle cpu %', ((await stat()) - before) / 30 * 100);
for (const [k, v] of t1) console.log(k, ((v - (t0.get(k) ?? 0)) / 30 * 100).toFixed(2), '%');
agent.kill('SIGTERM');
await agent;
for (const vm of vms) await vm.close();
await rm(dir, { recursive: true, force: true });
