import assert from 'node:assert/strict';
import { access, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import type { StoragePlugin } from '../../plugins/types.js';
import { serveControl } from '../../src/agent/control-server.js';
import { HookSpool } from '../../src/agent/hook-spool.js';
import { volumeService } from '../../src/agent/volume-service.js';
import { execaRunner } from '../../src/util/runner.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { FakeStorage } from '../helpers/fake-vm.js';
import { hookScript } from '../../src/cli/commands/hook.js';
import { labDomainXml } from '../../src/lab/libvirt-domain.js';
import { silentLogger } from '../../src/log/logger.js';
import { MiB } from '../../src/util/sizes.js';
import { LabWorld } from './helpers/lab-world.js';
import { until } from './helpers/watch.js';
import { builtCli } from './helpers/built-cli.js';

/**
 * The libvirt hook as libvirtd runs it: the shell script that `tideline hook
 * install` writes (the packaged hooks/qemu pointing at this checkout's dist),
 * arguments and domain XML on stdin, the host configuration from a file.
 */

describe('libvirt hook', function () {
  this.timeout(60_000);
  let world: LabWorld;
  let config: string;
  let spool: string;
  let hookPath: string;

  before(async () => {
    world = await LabWorld.create();
    config = path.join(world.dir, 'tideline.conf');
    spool = path.join(world.dir, 'hook-events');
    await writeFile(config, `loop-domain = ${world.workspace.domainDir}\n`);
    const installed = await execa('node', [builtCli(), 'hook', 'install', '--root', world.dir, '--spool', spool], { timeout: 30_000 });
    hookPath = installed.stdout.replace(/^hook installed: /, '').trim();
    assert.equal(hookPath, path.join(world.dir, 'etc/libvirt/hooks/qemu.d/tideline'));
  });
  after(async () => {
    await world.dispose();
  });

  const hook = (args: string[], stdin: string, env: Record<string, string> = {}) =>
    execa(hookPath, args, { input: stdin, reject: false, timeout: 20_000, env: { TIDELINE_CONFIG: config, ...env } });

  const xmlFor = (device: string) => labDomainXml({ name: 'web', boot: { kernel: '/k', initrd: '/i', kernelVersion: 'x' }, devicePath: device, consoleLog: '/dev/null', writeMib: 16 });

  async function loopSize(device: string): Promise<number> {
    return Number(await readFile(`/sys/block/${path.basename(device)}/size`, 'utf8')) * 512;
  }

  it('prepare: makes this host see the size another host extended the volume to', async () => {
    await world.plugin.create('web-vda', 64 * MiB);
    const device = await world.plugin.activate('web-vda');
    // Another host's SPM grew it: the storage knows, this host's loop device does not yet.
    await world.plugin.extend('web-vda', 192 * MiB);
    assert.equal(await loopSize(device), 64 * MiB);
    const result = await hook(['web', 'prepare', 'begin', '-'], xmlFor(device));
    assert.equal(result.exitCode, 0, result.stderr);
    assert.equal(await loopSize(device), 192 * MiB);
  });

  it("prepare on a migration's destination: activates the volume in this host's own view, at the size the source's extensions gave it", async () => {
    await world.plugin.create('moving-vda', 64 * MiB);
    await world.plugin.extend('moving-vda', 320 * MiB);
    const hostTwo = path.join(world.dir, 'host2.conf');
    await writeFile(hostTwo, `loop-domain = ${world.workspace.domainDir}\nloop-view = 2\n`);
    // The XML keeps the source's path (host 1's directory), as /dev/VG/LV is the same name on every host.
    const sourcePath = path.join(world.workspace.domainDir, 'hosts', '1', 'moving-vda');
    const result = await hook(['moving', 'prepare', 'begin', '-'], xmlFor(sourcePath), { TIDELINE_CONFIG: hostTwo });
    assert.equal(result.exitCode, 0, result.stderr);
    const device = await readlink(path.join(world.workspace.domainDir, 'hosts', '2', 'moving-vda'));
    assert.match(device, /^\/dev\/loop\d+$/);
    assert.equal(await loopSize(device), 320 * MiB);
    await access(sourcePath).then(() => assert.fail('host 1 never activated the volume; its directory stays empty'), () => undefined);
  });

  it('prepare through the agent on the control socket: the agent activates, refreshes and publishes its inventory; the hook relays its outcome, and does the work itself when the agent serves another domain or is gone', async () => {
    const socket = path.join(world.dir, 'agent-prepare.sock');
    const withAgent = path.join(world.dir, 'with-agent.conf');
    await writeFile(withAgent, `loop-domain = ${world.workspace.domainDir}\ncontrol-socket = ${socket}\n`);
    let published = 0;
    const service = (plugin: StoragePlugin) => volumeService({ plugin, logger: silentLogger, extender: new FakeStorage(new FakeClock()), run: execaRunner, publishInventory: async () => void (published += 1) });
    await world.plugin.create('agentprep-vda', 64 * MiB);
    const device = await world.plugin.activate('agentprep-vda');
    await world.plugin.extend('agentprep-vda', 192 * MiB);
    let server = await serveControl(socket, service(world.plugin), silentLogger);
    try {
      const prepared = await hook(['agentprep', 'prepare', 'begin', '-'], xmlFor(device), { TIDELINE_CONFIG: withAgent });
      assert.equal(prepared.exitCode, 0, prepared.stderr);
      assert.equal(await loopSize(device), 192 * MiB);
      assert.equal(published, 1, 'the agent did the work: it published its inventory');
      // A volume that is gone: the agent's refusal reaches libvirt, naming disk and volume.
      await world.plugin.create('ghost-vda', 64 * MiB);
      const ghost = await world.plugin.activate('ghost-vda');
      await rm(path.join(world.workspace.domainDir, 'ghost-vda.img'));
      const gone = await hook(['ghost', 'prepare', 'begin', '-'], xmlFor(ghost), { TIDELINE_CONFIG: withAgent });
      assert.equal(gone.exitCode, 1);
      assert.match(gone.stderr, new RegExp(`domain ghost cannot start: its disk ${ghost} is volume ghost-vda, which does not exist`));
      assert.equal(published, 2, 'the agent answered that one too');
    } finally {
      server.close();
    }
    // An agent of another storage domain refuses; the hook then refreshes by itself.
    await world.plugin.extend('agentprep-vda', 256 * MiB);
    server = await serveControl(socket, service({ ...world.plugin, domain: '/elsewhere' } as unknown as StoragePlugin), silentLogger);
    try {
      const prepared = await hook(['agentprep', 'prepare', 'begin', '-'], xmlFor(device), { TIDELINE_CONFIG: withAgent });
      assert.equal(prepared.exitCode, 0, prepared.stderr);
      assert.equal(await loopSize(device), 256 * MiB);
      assert.equal(published, 2, 'the agent of another domain did nothing');
    } finally {
      server.close();
    }
    // No agent listening any more: the hook does it itself.
    await world.plugin.extend('agentprep-vda', 320 * MiB);
    const alone = await hook(['agentprep', 'prepare', 'begin', '-'], xmlFor(device), { TIDELINE_CONFIG: withAgent });
    assert.equal(alone.exitCode, 0, alone.stderr);
    assert.equal(await loopSize(device), 320 * MiB);
  });

  it('prepare through the agent following the spool: the shell hands it the XML and relays its answer without starting node; it does the work itself when the agent declines, is gone, or dies while it waits', async () => {
    // The hook with a node that does not exist: an answer relayed without a node start is the agent's.
    const noNode = path.join(world.dir, 'hook-spool-without-node');
    await writeFile(noNode, await hookScript({ nodePath: path.join(world.dir, 'no-such-node'), spool }), { mode: 0o755 });
    const runWithoutNode = (name: string, device: string, env: Record<string, string> = {}) => execa(noNode, [name, 'prepare', 'begin', '-'], { input: xmlFor(device), reject: false, timeout: 20_000, env: { TIDELINE_CONFIG: config, ...env } });
    let published = 0;
    const service = (plugin: StoragePlugin) => volumeService({ plugin, logger: silentLogger, extender: new FakeStorage(new FakeClock()), run: execaRunner, publishInventory: async () => void (published += 1) });
    await world.plugin.create('spoolprep-vda', 64 * MiB);
    const device = await world.plugin.activate('spoolprep-vda');
    await world.plugin.extend('spoolprep-vda', 192 * MiB);
    let agentSpool = await HookSpool.watch(spool, async () => undefined, silentLogger, (request) => service(world.plugin).prepareDomain(request));
    try {
      const prepared = await runWithoutNode('spoolprep', device);
      assert.deepEqual([prepared.exitCode, prepared.stderr], [0, '']);
      assert.equal(await loopSize(device), 192 * MiB);
      assert.equal(published, 1, 'the agent did the work: it published its inventory');
      await world.plugin.create('spoolghost-vda', 64 * MiB);
      const ghost = await world.plugin.activate('spoolghost-vda');
      await rm(path.join(world.workspace.domainDir, 'spoolghost-vda.img'));
      const gone = await runWithoutNode('spoolghost', ghost);
      assert.equal(gone.exitCode, 1);
      assert.match(gone.stderr, new RegExp(`^tideline: domain spoolghost cannot start: its disk ${ghost} is volume spoolghost-vda, which does not exist`));
      assert.doesNotMatch(gone.stderr, /no-such-node/);
      assert.equal(published, 2, 'the agent answered that one too');
      // The hook naming the spool by another path (as /var/run for /run): the agent still answers it.
      const link = path.join(world.dir, 'hook-events-link');
      await symlink(spool, link);
      await world.plugin.extend('spoolprep-vda', 224 * MiB);
      const throughLink = await runWithoutNode('spoolprep', device, { TIDELINE_HOOK_SPOOL: link });
      assert.deepEqual([throughLink.exitCode, throughLink.stderr], [0, '']);
      assert.equal(await loopSize(device), 224 * MiB);
    } finally {
      await agentSpool.close();
    }
    assert.deepEqual(await readdir(spool), [], 'no request, FIFO or mark left behind');

    // An agent of another storage domain declines: the hook does it itself (node).
    await world.plugin.extend('spoolprep-vda', 256 * MiB);
    agentSpool = await HookSpool.watch(spool, async () => undefined, silentLogger, (request) => service({ ...world.plugin, domain: '/elsewhere' } as unknown as StoragePlugin).prepareDomain(request));
    try {
      const declined = await hook(['spoolprep', 'prepare', 'begin', '-'], xmlFor(device));
      assert.equal(declined.exitCode, 0, declined.stderr);
      assert.equal(await loopSize(device), 256 * MiB);
      assert.equal(published, 3, 'the agent of another domain did nothing');
    } finally {
      await agentSpool.close();
    }

    // An agent that stopped without removing its mark (killed): the hook does not wait for it.
    const exited = execa('true');
    const exitedPid = exited.pid;
    await exited;
    await writeFile(path.join(spool, '.agent'), `${exitedPid}\n`);
    await world.plugin.extend('spoolprep-vda', 320 * MiB);
    let started = performance.now();
    const stale = await hook(['spoolprep', 'prepare', 'begin', '-'], xmlFor(device));
    assert.equal(stale.exitCode, 0, stale.stderr);
    assert.equal(await loopSize(device), 320 * MiB);
    assert.ok(performance.now() - started < 5_000, 'no wait for an agent that is not there');

    // An agent that takes the request and dies before answering: noticed within about a second.
    const hanging = await HookSpool.watch(spool, async () => undefined, silentLogger, () => new Promise(() => undefined));
    const standIn = execa('sleep', ['60'], { reject: false });
    try {
      await writeFile(path.join(spool, '.agent'), `${standIn.pid}\n`);
      await world.plugin.extend('spoolprep-vda', 384 * MiB);
      setTimeout(() => standIn.kill('SIGKILL'), 1_500);
      started = performance.now();
      const orphaned = await hook(['spoolprep', 'prepare', 'begin', '-'], xmlFor(device));
      const waitedMs = performance.now() - started;
      assert.equal(orphaned.exitCode, 0, orphaned.stderr);
      assert.equal(await loopSize(device), 384 * MiB);
      assert.ok(waitedMs > 1_400 && waitedMs < 6_000, `waited ${Math.round(waitedMs)} ms: until the agent died, then about a second`);
    } finally {
      standIn.kill('SIGKILL');
      await standIn;
      await hanging.close();
      await rm(path.join(spool, '.agent'), { force: true });
    }
    assert.deepEqual((await readdir(spool)).filter((name) => name.startsWith('.')), [], 'the hook removes its FIFO and request even when it gave up');
  });

  it('prepare: decides a domain without a disk on the storage domain in the shell, without starting node', async () => {
    // The same hook with a node that does not exist: whatever starts node fails loudly.
    const noNode = path.join(world.dir, 'hook-without-node');
    await writeFile(noNode, await hookScript({ nodePath: path.join(world.dir, 'no-such-node'), spool }), { mode: 0o755 });
    const run = (xml: string) => execa(noNode, ['web', 'prepare', 'begin', '-'], { input: xml, reject: false, timeout: 20_000, env: { TIDELINE_CONFIG: config } });
    const elsewhere = await run(xmlFor('/var/lib/libvirt/images/web.qcow2'));
    assert.deepEqual([elsewhere.exitCode, elsewhere.stderr], [0, '']);
    const ours = await run(xmlFor(path.join(world.workspace.domainDir, 'hosts', '1', 'web-vda')));
    assert.notEqual(ours.exitCode, 0, 'a disk of the storage domain goes to node');
    assert.match(ours.stderr, /no-such-node/);
    const unconfigured = await execa(noNode, ['web', 'prepare', 'begin', '-'], { input: xmlFor('/dev/loop99'), reject: false, timeout: 20_000, env: { TIDELINE_CONFIG: path.join(world.dir, 'absent.conf') } });
    assert.deepEqual([unconfigured.exitCode, unconfigured.stderr], [0, '']);
  });

  it('prepare: refuses the start, naming disk and volume, when the volume is gone', async () => {
    await world.plugin.create('gone-vda', 64 * MiB);
    const device = await world.plugin.activate('gone-vda');
    await rm(path.join(world.workspace.domainDir, 'gone-vda.img'));
    const result = await hook(['gone', 'prepare', 'begin', '-'], xmlFor(device));
    assert.equal(result.exitCode, 1);
    assert.match(result.stderr, new RegExp(`domain gone cannot start: its disk ${device} is volume gone-vda, which does not exist in storage domain`));
  });

  it('prepare: malformed XML naming a path of the storage domain gives a message and lets libvirt decide (exit 0)', async () => {
    const result = await hook(['web', 'prepare', 'begin', '-'], "<domain><name>web</name><devices><disk><source dev='/dev/loop3'");
    assert.equal(result.exitCode, 0);
    assert.match(result.stderr, /cannot read the XML of domain web .*not well-formed.*thin volumes were not refreshed/);
  });

  it('hands other events to the agent through its spool, and does nothing when no agent runs', async () => {
    const down = await hook(['web', 'started', 'begin', '-'], '');
    assert.deepEqual([down.exitCode, down.stderr, down.stdout], [0, '', '']);

    let rescans = 0;
    const agentSpool = await HookSpool.watch(spool, async () => {
      rescans += 1;
    }, silentLogger);
    try {
      const up = await hook(['web server', 'stopped', 'end', '-'], xmlFor('/dev/loop99'));
      assert.equal(up.exitCode, 0, up.stderr);
      await until(async () => rescans === 1, 10_000, 'the agent to rescan after the hook event');
      assert.deepEqual(await readdir(spool), [], 'the agent leaves no event files behind');
    } finally {
      await agentSpool.close();
    }
  });

  it("migrate begin on a destination: refused, naming the fix, when no agent runs for a domain with thin disks; handed to the agent when one runs; the domain XML left as it is", async () => {
    const thin = xmlFor('/dev/loop99');
    const refused = await hook(['web', 'migrate', 'begin', '-'], thin);
    assert.equal(refused.exitCode, 1);
    assert.match(refused.stderr, /no tideline agent follows .* on this host, and domain web has thin disks .* Start tideline-agent here/);
    assert.equal(refused.stdout, '', 'nothing on stdout: libvirt would take it as a new domain XML');
    const elsewhere = await hook(['other', 'migrate', 'begin', '-'], xmlFor('/var/lib/libvirt/images/other.qcow2'));
    assert.deepEqual([elsewhere.exitCode, elsewhere.stdout, elsewhere.stderr], [0, '', ''], 'a domain without thin disks migrates as libvirt decides');

    const seen: string[] = [];
    const agentSpool = await HookSpool.watch(spool, async (events) => {
      seen.push(...events.map((event) => `${event.domain} ${event.operation} ${event.subOperation}`));
    }, silentLogger, async () => ({ exitCode: 0 }));
    try {
      const handed = await hook(['web', 'migrate', 'begin', '-'], thin);
      assert.deepEqual([handed.exitCode, handed.stdout, handed.stderr], [0, '', '']);
      await until(async () => seen.includes('web migrate begin'), 10_000, 'the agent to hear of the incoming migration');
    } finally {
      await agentSpool.close();
    }
  });

  it('does nothing on a host without tideline configuration, and says what is wrong with a broken one', async () => {
    const unconfigured = await hook(['web', 'prepare', 'begin', '-'], xmlFor('/dev/loop99'), { TIDELINE_CONFIG: path.join(world.dir, 'absent.conf') });
    assert.deepEqual([unconfigured.exitCode, unconfigured.stderr], [0, '']);
    const broken = path.join(world.dir, 'broken.conf');
    await writeFile(broken, `loop-domain = ${world.workspace.domainDir}\nchunk = lots\n`);
    const result = await hook(['web', 'prepare', 'begin', '-'], xmlFor('/dev/loop99'), { TIDELINE_CONFIG: broken });
    assert.equal(result.exitCode, 0);
    assert.match(result.stderr, /broken\.conf:2: chunk .*cannot read "lots" as a size/);
  });
});
