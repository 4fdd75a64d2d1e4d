import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { LabWorld } from './helpers/lab-world.js';
import { until } from './helpers/watch.js';
import type { StatusDocument } from '../../src/agent/status-file.js';
import { freeLoopbackPort } from './helpers/free-port.js';
import { builtCli } from './helpers/built-cli.js';

/** `tideline agent` as systemd runs it, watching a real QEMU; `tideline status` and /metrics read what it did. */
const TIDELINE = [builtCli()];


describe('tideline agent and status (command line)', function () {
  this.timeout(4 * 60_000);
  let world: LabWorld;
  let agent: ResultPromise | undefined;

  beforeEach(async () => {
    world = await LabWorld.create();
  });
  afterEach(async () => {
    agent?.kill('SIGKILL');
    await agent?.catch(() => undefined);
    agent = undefined;
    await world.dispose();
  });

  it('grows the volume of a VM it was pointed at, publishes status and metrics, and stops on SIGTERM', async () => {
    const vm = await world.startVm({ name: 'web01', writeMib: 512 });
    const statusFile = path.join(world.dir, 'status.json');
    const port = await freeLoopbackPort();
    agent = execa('node', [...TIDELINE, 'agent', '--qmp', `web01=${vm.qmpSocket}`, '--domain', world.workspace.domainDir, '--chunk', '128M', '--free-target', '96M', '--poll', '0.5', '--status-file', statusFile, '--metrics-listen', `127.0.0.1:${port}`, '--control-socket', path.join(world.dir, 'agent.sock')], { reject: false, env: { TIDELINE_LOG_LEVEL: 'info' } });
    let log = '';
    agent.stderr?.on('data', (chunk: Buffer) => (log += chunk.toString()));

    const progress = await vm.finished();
    assert.ok(progress.result, `guest gave no result; agent log:\n${log}`);
    assert.equal(progress.result.bad, 0);

    await until(async () => {
      const document = JSON.parse((await execa('node', [...TIDELINE, 'status', '--json', '--file', statusFile])).stdout) as StatusDocument;
      return (document.vms[0]?.drives[0]?.extensions ?? 0) >= 3;
    }, 10_000, 'the status file to show the extensions');
    const table = await execa('node', [...TIDELINE, 'status', '--file', statusFile]);
    assert.match(table.stdout, /agent \d+ running/);
    assert.match(table.stdout, /web01 .*vda .*web01-vda/);

    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const extensions = Number(/^tideline_extensions_total\{vm="web01",drive="vda"\} (\d+)$/m.exec(metrics)?.[1]);
    assert.ok(extensions >= 3, `metrics show ${extensions} extensions:\n${metrics.slice(0, 2000)}`);
    assert.match(metrics, /^tideline_volume_bytes\{vm="web01",drive="vda",volume="web01-vda"\} \d+$/m);

    const events = log.split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.ok(events.some((event) => event.msg === 'monitoring VM' && event.vm === 'web01'), 'no structured "monitoring VM" log line');

    agent.kill('SIGTERM');
    const ended = await agent;
    assert.equal(ended.exitCode, 0, `agent exit ${ended.exitCode}:\n${log}`);
    agent = undefined;
    const after = await execa('node', [...TIDELINE, 'status', '--file', statusFile], { reject: false });
    assert.match(after.stdout, /is NOT running: this is its last state/);
  });

  it('finds plain QEMU VMs by their sockets in a watched directory', async () => {
    const statusFile = path.join(world.dir, 'status.json');
    agent = execa('node', [...TIDELINE, 'agent', '--qmp-dir', world.dir, '--domain', world.workspace.domainDir, '--chunk', '128M', '--free-target', '96M', '--poll', '0.5', '--status-file', statusFile, '--control-socket', path.join(world.dir, 'agent.sock')], { reject: false, env: { TIDELINE_LOG_LEVEL: 'info' } });
    let log = '';
    agent.stderr?.on('data', (chunk: Buffer) => (log += chunk.toString()));
    await until(() => log.includes('watching for QMP sockets'), 30_000, 'the agent to watch the directory');
    const vm = await world.startVm({ name: 'web02', writeMib: 384 });
    const progress = await vm.finished();
    assert.equal(progress.result?.bad, 0, `guest result ${JSON.stringify(progress.result)}; agent log:\n${log}`);
    const attached = log.split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>).filter((event) => event.msg === 'monitoring VM');
    assert.deepEqual(attached.map((event) => event.vm), ['web02'], 'the agent should watch the VM once, by its .qmp socket only');
    const extensions = log.split('\n').filter((line) => line.includes('"volume extended"')).length;
    assert.ok(extensions >= 2, `only ${extensions} extensions`);
  });

  it('takes storage domain, control socket and policy from the host configuration file, and names a broken line', async () => {
    const config = path.join(world.dir, 'tideline.conf');
    const socket = path.join(world.dir, 'from-config.sock');
    await writeFile(config, `# host defaults\nloop-domain = ${world.workspace.domainDir}\ncontrol-socket = ${socket}\nchunk = 512M\nfree-target = 256M\n`);
    agent = execa('node', [...TIDELINE, 'agent', '--config', config, '--status-file', path.join(world.dir, 'status.json')], { reject: false, env: { TIDELINE_LOG_LEVEL: 'info' } });
    await until(async () => (await execa('test', ['-S', socket], { reject: false })).exitCode === 0, 30_000, 'the control socket named in the configuration');
    agent.kill('SIGTERM');
    assert.equal((await agent).exitCode, 0);
    agent = undefined;

    await writeFile(config, `loop-domain = ${world.workspace.domainDir}\nfree-target = 1024M\nchunk = 512M\n`);
    const inverted = await execa('node', [...TIDELINE, 'agent', '--config', config], { reject: false, timeout: 30_000 });
    assert.equal(inverted.exitCode, 2);
    assert.match(inverted.stderr, /freeTarget: must not exceed the chunk/);
    await writeFile(config, `loop-domain = ${world.workspace.domainDir}\nchunk = 512 apples\n`);
    const broken = await execa('node', [...TIDELINE, 'agent', '--config', config], { reject: false, timeout: 30_000 });
    assert.equal(broken.exitCode, 2);
    assert.match(broken.stderr, /tideline\.conf:2: chunk/);
  });

  it('refuses a relative QMP path and a missing domain with exit 2 and 1, naming what is wrong', async () => {
    const relative = await execa('node', [...TIDELINE, 'agent', '--qmp', 'web.qmp', '--domain', world.workspace.domainDir], { reject: false });
    assert.equal(relative.exitCode, 2);
    assert.match(relative.stderr, /QMP socket 'web\.qmp' must be an absolute path/);
    const missing = await execa('node', [...TIDELINE, 'agent', '--qmp', '/run/x.qmp', '--domain', path.join(world.dir, 'nothing')], { reject: false });
    assert.equal(missing.exitCode, 1);
    assert.match(missing.stderr, /is not a loop storage domain .*\[storage-domain\]/);
  });
});
