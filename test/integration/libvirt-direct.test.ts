import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { checkLibvirtSocket } from '../../src/doctor/checks.js';
import { Workspace } from '../../src/lab/workspace.js';
import { LibvirtError } from '../../src/libvirt/libvirt-error.js';
import { DirectLibvirt } from '../../src/libvirt/remote/direct-libvirt.js';
import { LibvirtTransportError } from '../../src/libvirt/remote/remote-connection.js';
import { Virsh } from '../../src/libvirt/virsh.js';
import { parseEventLine, type LibvirtEvent } from '../../src/libvirt/events.js';
import { RemoteEventStream } from '../../src/libvirt/remote/remote-event-stream.js';
import { silentLogger } from '../../src/log/logger.js';
import { systemClock } from '../../src/util/clock.js';
import { until } from './helpers/watch.js';
import { execaRunner } from '../../src/util/runner.js';
import { GiB } from '../../src/util/sizes.js';
import { LibvirtHost } from './helpers/libvirt-host.js';
import { builtCli } from './helpers/built-cli.js';

/**
 * tideline's own libvirt client against a real libvirtd (one of its own, in a
 * private namespace, with defined domains and no QEMU): it must give exactly
 * what virsh gives, and `tideline policy show` must answer without starting
 * virsh at all, or fall back to virsh when the socket cannot be used.
 */
const NAMESPACE = 'https://tideline.dev/xmlns/policy/1';
const DOMAINS: Record<string, string> = {
  web: `<tl:thin xmlns:tl="${NAMESPACE}" chunk="268435456" free-target="128M"><tl:drive target="vdb" enabled="no" max-size="10G"/></tl:thin>`,
  'by-hand': `<tl:thin xmlns:tl="${NAMESPACE}" chunk="1G"><!-- set by hand --><tl:drive target="vda" enabled="yes"/></tl:thin>`,
  plain: '',
};

describe('libvirt over its socket (a real libvirtd)', function () {
  this.timeout(120_000);
  let workspace: Workspace | undefined;
  let host: LibvirtHost | undefined;

  before(async () => {
    workspace = await Workspace.create({ prefix: 'tideline-test-direct-', capacityBytes: GiB, run: execaRunner });
    const started = await LibvirtHost.start(workspace, { name: 'direct', uuid: '7d1e0c5a-0000-4000-8000-0000000000d1', tidelineConfig: '' });
    host = started;
    for (const [name, metadata] of Object.entries(DOMAINS)) {
      const file = path.join(workspace.dir, `${name}.xml`);
      await writeFile(file, `<domain type='qemu'><name>${name}</name><memory>65536</memory><os><type arch='x86_64'>hvm</type></os>${metadata ? `<metadata>${metadata}</metadata>` : ''}</domain>`);
      const defined = await started.virsh('define', file);
      assert.equal(defined.exitCode, 0, defined.stderr);
    }
  });
  after(async () => {
    for (const name of [...Object.keys(DOMAINS), 'disk']) await host?.virsh('undefine', name);
    await host?.stop();
    await workspace?.dispose();
  });

  it('reads each domain\'s metadata exactly as tideline read it through virsh, and "" where virsh finds none', async () => {
    const direct = new DirectLibvirt(host!.uri);
    const throughVirsh = new Virsh(execaRunner, host!.uri);
    for (const name of Object.keys(DOMAINS)) {
      assert.equal(await direct.metadata(name, NAMESPACE), await throughVirsh.metadata(name, NAMESPACE), name);
    }
    assert.match((await host!.virsh('metadata', 'plain', NAMESPACE)).stderr, /metadata not found/);
    assert.match(await direct.metadata('web', NAMESPACE), /chunk="268435456"/, 'virsh printed nothing: the comparison proves nothing');
    const library = /Using library: libvirt (\S+)/.exec((await host!.virsh('version')).stdout)?.[1];
    assert.ok(library, 'virsh version named no library version');
    const doctor = await checkLibvirtSocket(direct);
    assert.deepEqual([doctor.status, doctor.detail], ['ok', `${host!.uri} answers over ${path.join(host!.base, 'run', 'libvirt-sock')} (libvirt ${library}); the agent asks it directly at every poll`]);
  });

  it('names an unknown domain, and reports a job question on a stopped domain as libvirt does (not as an unusable socket)', async () => {
    const direct = new DirectLibvirt(host!.uri);
    await assert.rejects(direct.metadata('no-such-vm', NAMESPACE), (error: unknown) => error instanceof LibvirtError && /has no domain 'no-such-vm': Domain not found/.test(error.message));
    assert.match((await host!.virsh('domjobinfo', 'web')).stderr, /domain is not running/);
    await assert.rejects(direct.migratingOut('web'), (error: unknown) => error instanceof LibvirtError && !(error instanceof LibvirtTransportError) && /could not read its job for domain 'web': .*domain is not running/.test(error.message));
  });

  it('serves `tideline policy show` at the default URI without virsh on the PATH, and falls back to virsh when the socket is unusable', async () => {
    // Inside the host's namespaces /run/libvirt is this libvirtd's run directory, so qemu:///system is it.
    const policyShow = (...args: string[]) => execa(host!.prefix[0]!, [...host!.prefix.slice(1), 'PATH=/nonexistent', process.execPath, builtCli(), 'policy', 'show', ...args], { reject: false, timeout: 60_000 });
    const shown = await policyShow('web');
    assert.equal(shown.exitCode, 0, shown.stderr);
    assert.equal(shown.stdout, 'web: chunk=256.0 MiB free-target=128.0 MiB\n  vdb: enabled=no max-size=10.00 GiB');
    const byHand = await policyShow('by-hand');
    assert.deepEqual([byHand.exitCode, byHand.stdout], [0, 'by-hand: chunk=1.00 GiB\n  vda: enabled=yes']);
    const unknown = await policyShow('no-such-vm');
    assert.deepEqual([unknown.exitCode, unknown.stderr], [1, "tideline: libvirt (qemu:///system) has no domain 'no-such-vm': Domain not found: no domain with matching name 'no-such-vm' [libvirt]"]);
    const unusable = await policyShow('web', '--uri', `qemu+unix:///system?socket=${path.join(workspace!.dir, 'no-such-socket')}`);
    assert.equal(unusable.exitCode, 1);
    assert.match(unusable.stderr, /^tideline: virsh metadata failed: .*virsh.*could not start: no such command \[libvirt\]$/);
  });

  it('answers the agent\'s questions about a running domain as virsh does, sets thresholds and resumes, and survives a restart of libvirtd', async () => {
    const image = path.join(workspace!.dir, 'disk.qcow2');
    await execa('qemu-img', ['create', '-q', '-f', 'qcow2', image, '64M'], { timeout: 30_000 });
    const file = path.join(workspace!.dir, 'disk.xml');
    await writeFile(file, `<domain type='qemu'><name>disk</name><memory>65536</memory><os><type arch='x86_64'>hvm</type></os><devices><disk type='file' device='disk'><driver name='qemu' type='qcow2' error_policy='stop'/><source file='${image}'/><target dev='vda' bus='virtio'/></disk></devices></domain>`);
    assert.equal((await host!.virsh('define', file)).exitCode, 0);
    const started = await host!.virsh('start', '--paused', 'disk');
    assert.equal(started.exitCode, 0, started.stderr);
    await host!.recordQemu('disk');
    const unusable: string[] = [];
    const direct = new DirectLibvirt(host!.uri, { keepOpen: true, onUnusable: (error) => unusable.push(error.message) });
    const throughVirsh = new Virsh(execaRunner, host!.uri);
    try {
      assert.deepEqual(await direct.state('disk'), await throughVirsh.state('disk'));
      // The live XML the agent reconciles from: what `virsh dumpxml` prints (virsh adds its own trailing newline).
      assert.equal((await direct.xml('disk')).trim(), (await host!.virsh('dumpxml', 'disk')).stdout.trim());
      assert.match(await direct.xml('disk'), /<target dev='vda' bus='virtio'\/>/);
      assert.deepEqual(await direct.state('disk'), { state: 'paused', reason: 'user' });
      assert.deepEqual(await direct.state('web'), await throughVirsh.state('web'), 'a defined domain that does not run');
      await direct.setThreshold('disk', 'vda', 48 * 1024 * 1024);
      const stats = await direct.blockStats('disk');
      assert.deepEqual(stats, await throughVirsh.blockStats('disk'));
      assert.equal(stats[0]?.target, 'vda');
      assert.equal(stats[0]?.threshold, 48 * 1024 * 1024, 'the threshold set over the socket is the one virsh reads');
      assert.deepEqual(await direct.blockErrors('disk'), await throughVirsh.blockErrors('disk'));
      assert.equal(await direct.migratingOut('disk'), await throughVirsh.migratingOut('disk'));

      // libvirtd restarts (the domain runs on): the kept connection breaks and the next question opens a new one.
      await host!.killDaemon();
      await host!.startDaemon();
      await direct.resume('disk');
      assert.deepEqual(await throughVirsh.state('disk'), { state: 'running', reason: 'unpaused' });
      assert.deepEqual(await direct.state('disk'), { state: 'running', reason: 'unpaused' });
      assert.deepEqual(unusable, [], 'no question fell back to virsh');
      await assert.rejects(direct.setThreshold('disk', 'vdz', 1), (error: unknown) => error instanceof LibvirtError && !(error instanceof LibvirtTransportError) && /could not set the write threshold of vdz for domain 'disk': .*vdz/.test(error.message));
    } finally {
      await direct.close();
      await host!.virsh('destroy', 'disk');
    }
  });

  it('delivers over the socket the domain events `virsh event` prints, as the same values, and survives a restart of libvirtd', async () => {
    const image = path.join(workspace!.dir, 'events.qcow2');
    await execa('qemu-img', ['create', '-q', '-f', 'qcow2', image, '64M'], { timeout: 30_000 });
    const file = path.join(workspace!.dir, 'events.xml');
    await writeFile(file, `<domain type='qemu'><name>events</name><memory>65536</memory><os><type arch='x86_64'>hvm</type></os><devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='${image}'/><target dev='vda' bus='virtio'/></disk></devices></domain>`);
    const fromSocket: LibvirtEvent[] = [];
    const stream = new RemoteEventStream(host!.uri, systemClock, silentLogger);
    stream.on('event', (event) => fromSocket.push(event));
    let restarts = 0;
    stream.on('restarted', () => (restarts += 1));
    await stream.start();
    const printer = execa('virsh', ['-c', host!.uri, 'event', '--all', '--loop'], { reject: false, buffer: false });
    const fromVirsh = () => virshLines.join('\n');
    const virshLines: string[] = [];
    printer.stdout?.on('data', (chunk: Buffer) => virshLines.push(...chunk.toString().split('\n').filter(Boolean)));
    const stopped = (events: LibvirtEvent[]) => events.some((event) => event.kind === 'lifecycle' && event.domain === 'events' && event.event === 'Stopped');
    try {
      // virsh's own registrations are in place once it prints an event: a probe domain defined and undefined until it does.
      const probe = path.join(workspace!.dir, 'probe.xml');
      await writeFile(probe, `<domain type='qemu'><name>probe</name><memory>65536</memory><os><type arch='x86_64'>hvm</type></os></domain>`);
      await until(async () => {
        await host!.virsh('define', probe);
        await host!.virsh('undefine', 'probe');
        return virshLines.some((line) => line.includes("'probe'"));
      }, 30_000, 'virsh event to follow events');
      assert.equal((await host!.virsh('create', file, '--paused')).exitCode, 0);
      await host!.recordQemu('events');
      await until(async () => virshLines.some((line) => line.includes("'events'")), 30_000, 'virsh event to print the start');
      for (const command of [['resume', 'events'], ['suspend', 'events'], ['metadata', '--domain', 'events', '--uri', NAMESPACE, '--key', 'tl', '--set', `<thin chunk='1G'/>`, '--live'], ['resume', 'events'], ['destroy', 'events']]) {
        const done = await host!.virsh(...command);
        assert.equal(done.exitCode, 0, `${command.join(' ')}: ${done.stderr}`);
      }
      await until(async () => stopped(fromSocket) && stopped(virshLines.map(parseEventLine).filter((event): event is LibvirtEvent => event !== undefined)), 30_000, 'both to see the domain stop');
      const comparable = (event: LibvirtEvent) => (event.domain !== 'events' ? undefined : event.kind === 'lifecycle' ? `${event.event} ${event.detail}` : event.kind === 'other' ? event.name : event.kind);
      const viaVirsh = virshLines.map(parseEventLine).filter((event): event is LibvirtEvent => event !== undefined).map(comparable).filter(Boolean);
      const viaSocket = fromSocket.map(comparable).filter(Boolean);
      assert.deepEqual(viaSocket, viaVirsh, `virsh printed:\n${fromVirsh()}`);
      assert.ok(viaSocket.includes('Started Booted') && viaSocket.includes('metadata-change') && viaSocket.includes('Stopped Destroyed'), viaSocket.join(', '));

      // libvirtd goes and comes back: the stream connects again, says so, and delivers again.
      await host!.killDaemon();
      await host!.startDaemon();
      await until(async () => restarts >= 1, 30_000, 'the event stream to reconnect');
      const before = fromSocket.length;
      assert.equal((await host!.virsh('create', file, '--paused')).exitCode, 0);
      await host!.recordQemu('events');
      await until(async () => fromSocket.slice(before).some((event) => event.kind === 'lifecycle' && event.domain === 'events' && event.event === 'Started'), 30_000, 'an event after the restart');
    } finally {
      stream.stop();
      printer.kill();
      await host!.virsh('destroy', 'events');
    }
  });
});
