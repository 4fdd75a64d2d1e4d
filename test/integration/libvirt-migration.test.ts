import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { readStatus } from '../../src/agent/status-file.js';
import { MIGRATED_AWAY_MESSAGE, MIGRATION_CANCELLED_MESSAGE, POST_COPY_MESSAGE } from '../../src/monitor/migration.js';
import { RESTORED_PAUSED_MESSAGE } from '../../src/monitor/no-space-pause.js';
import { isPauseMark, PAUSE_NAMESPACE } from '../../src/libvirt/pause-marker.js';
import { MiB } from '../../src/util/sizes.js';
import { ClusterWorld } from './helpers/cluster-world.js';
import { LibvirtGuest } from './helpers/libvirt-guest.js';
import { DIRECT_UNUSABLE_MESSAGE } from '../../src/libvirt/remote/direct-libvirt.js';
import { LibvirtHost } from './helpers/libvirt-host.js';
import { TidelineProcess } from './helpers/tideline-process.js';
import { until } from './helpers/watch.js';

/**
 * `virsh migrate --live` between two libvirtds, each a host of its own
 * (tests/integration/helpers/libvirt-host.ts): host ids 1 and 2, the SPM on
 * host 1, one loop storage domain in which each host sees a volume through its
 * own loop device under the one path every host uses (DOMAIN/hosts/1/VOLUME,
 * as /dev/VG/LV), so host 1's extensions are invisible on host 2 until host 2
 * refreshes. Each host runs its own agent inside its namespaces, with the
 * hook installed in its own libvirt. The guest writes throttled through a
 * cancelled migration and then a real one; the volume grows before, during
 * and after.
 */
const MAX_HOSTS = 4;
const WRITE_MIB = 896;
const THROTTLE_BYTES_PER_SECOND = 24 * MiB;
const ABANDONED = 'the migration ended while its destination was awaited; using the new space here';
const ARRIVED = 'VM arrived by live migration: volumes refreshed, thresholds armed';

describe('real libvirt: virsh migrate --live between two hosts while the thin disk grows', function () {
  this.timeout(10 * 60_000);
  let cluster: ClusterWorld;
  const hosts: LibvirtHost[] = [];

  beforeEach(async () => {
    cluster = await ClusterWorld.create(MAX_HOSTS);
  });
  afterEach(async function () {
    await cluster.keepLogsIfFailed(this.currentTest, 'libvirt-migration');
    for (const process of cluster.processes) await process.kill().catch(() => undefined);
    for (const host of hosts.splice(0)) await host.stop().catch(() => undefined);
    await cluster.dispose();
  });

  async function startHost(hostId: number): Promise<{ host: LibvirtHost; agent: TidelineProcess }> {
    const domainDir = cluster.lab.workspace.domainDir;
    const ownView = path.join(domainDir, 'hosts', String(hostId));
    const sharedName = path.join(domainDir, 'hosts', '1');
    await mkdir(ownView, { recursive: true });
    await mkdir(sharedName, { recursive: true });
    const host = await LibvirtHost.start(cluster.lab.workspace, {
      name: String(hostId),
      uuid: `7d1e0c5a-0000-4000-8000-00000000000${hostId}`,
      // The hook hands `prepare` to this host's agent through its spool (hooks/qemu); the control socket is its way when node runs.
      tidelineConfig: `loop-domain = ${domainDir}\nloop-view = ${hostId}\ncontrol-socket = ${controlSocket(hostId)}\n`,
      binds: hostId === 1 ? [] : [[ownView, sharedName]],
    });
    hosts.push(host);
    const agent = new TidelineProcess(`agent${hostId}`, [
      'agent', '--libvirt', '--mailbox', cluster.mailboxPath, '--host-id', String(hostId), '--chunk', '64M', '--free-target', '64M',
      '--hook-spool', host.hookSpool, '--poll', '0.5', '--status-file', statusFile(hostId), '--control-socket', controlSocket(hostId),
    ], { prefix: host.prefix });
    cluster.processes.push(agent);
    await agent.waitFor('following libvirt hook events', 60_000);
    return { host, agent };
  }

  const controlSocket = (hostId: number) => path.join(cluster.dir, `agent-${hostId}.sock`);
  const statusFile = (hostId: number) => path.join(cluster.dir, `status-${hostId}.json`);

  async function vmStatus(hostId: number, domain: string) {
    return (await readStatus(statusFile(hostId)).catch(() => undefined))?.vms.find((vm) => vm.vm === domain);
  }

  function served(spm: TidelineProcess): Array<{ hostId: number; time: number }> {
    return spm.logged('request served').map((event) => ({ hostId: Number(event.hostId), time: Number(event.time) }));
  }

  /** What the source's extensions did and how long each took: the story of a pause, printed when one happens. */
  function extensionTimeline(agent: TidelineProcess, origin: number): string {
    const told = new Set(['extending volume', 'migration destination sees the new space; using it here', 'volume extended', 'VM paused: a write found no space; extending, then resuming', 'VM resumed after extension', MIGRATION_CANCELLED_MESSAGE]);
    return agent.events
      .filter((event) => told.has(String(event.msg)))
      .map((event) => {
        const { msg, time, waitedMs, latencyMs, pausedMs, fromBytes, toBytes, highWater } = event;
        const figures = Object.entries({ waitedMs, latencyMs, pausedMs, fromBytes, toBytes, highWater }).filter(([, value]) => value !== undefined);
        return `  ${Number(time) - origin} ${String(msg)} ${figures.map(([key, value]) => `${key}=${String(value)}`).join(' ')}`;
      })
      .join('\n');
  }

  /** The SPM, both hosts with their agents, and a guest on host 1 that has written 128 MiB of its throttled write. */
  async function guestWritingOnHostOne(): Promise<{ spm: TidelineProcess; one: { host: LibvirtHost; agent: TidelineProcess }; two: { host: LibvirtHost; agent: TidelineProcess }; domain: string; guest: LibvirtGuest }> {
    const spm = cluster.spm(1, '2');
    await spm.waitFor('acting as SPM', 30_000);
    const [one, two] = [await startHost(1), await startHost(2)];
    const domain = `tlmig${process.pid}`;
    const guest = await LibvirtGuest.create(cluster, one.host, { domain, volume: 'mig-vda', writeMib: WRITE_MIB, writeBytesPerSecond: THROTTLE_BYTES_PER_SECOND });
    await guest.waitWritten(128, 180_000);
    return { spm, one, two, domain, guest };
  }

  it('a cancelled migration leaves the VM watched on the source; the real one moves it: zero pauses, thresholds armed at once, data intact', async () => {
    const { spm, one, two, domain, guest } = await guestWritingOnHostOne();

    // A migration the administrator cancels: the destination prepares and drops the VM, the source keeps it.
    // The cancel lands while an extension of the source awaits the destination's announcement (host 2's agent
    // is held still meanwhile): the source must use the space at once, not wait for a destination that is gone.
    const slow = one.host.virsh('migrate', '--live', domain, two.host.uri, '--migrateuri', 'tcp://127.0.0.1', '--bandwidth', '1');
    await two.agent.waitFor('VM is migrating in: keeping its volumes refreshed until it runs here', 60_000);
    process.kill(two.agent.pid!, 'SIGSTOP');
    try {
      // Past the SPM's answer (milliseconds) and into the wait for host 2, which cannot announce anything now.
      let inFlightSince: number | undefined;
      await until(
        () => {
          const waiting = one.agent.logged('extending volume').length > one.agent.logged('volume extended').length;
          inFlightSince = waiting ? (inFlightSince ?? Date.now()) : undefined;
          return inFlightSince !== undefined && Date.now() - inFlightSince >= 700;
        },
        60_000,
        'the source to wait for the destination during the migration',
      );
      const aborted = await one.host.virsh('domjobabort', domain);
      assert.equal(aborted.exitCode, 0, aborted.stderr);
      await one.agent.waitFor(ABANDONED, 10_000);
    } finally {
      process.kill(two.agent.pid!, 'SIGCONT');
    }
    const cancelled = await slow;
    assert.notEqual(cancelled.exitCode, 0, 'the migration was cancelled');
    const abandoned = one.agent.logged(ABANDONED)[0]!;
    assert.ok(Number(abandoned.waitedMs) < 3_000, `the source stopped waiting within a look at the job after the cancel (waited ${String(abandoned.waitedMs)} ms)`);
    assert.equal(one.agent.logged(MIGRATION_CANCELLED_MESSAGE).length, 0, 'the administrator cancelled it, not tideline');
    await two.agent.waitFor('domain stopped; no longer watched', 30_000);
    assert.match((await one.host.virsh('domstate', domain)).stdout, /running/);
    assert.equal(one.agent.logged(MIGRATED_AWAY_MESSAGE).length, 0);
    const extensionsAfterCancel = served(spm).length;
    await until(() => served(spm).filter((request) => request.hostId === 1).length > extensionsAfterCancel, 120_000, 'the source to go on extending after the cancelled migration');
    assert.equal((await vmStatus(1, domain))?.migration ?? null, null, 'the source still watches the VM as its own');

    const startedAt = Date.now();
    // As an administrator moves a VM for good: defined on host 2, gone from host 1.
    const migrated = await one.host.virsh('migrate', '--live', '--persistent', '--undefinesource', domain, two.host.uri, '--migrateuri', 'tcp://127.0.0.1', '--bandwidth', '12');
    const completedAt = Date.now();
    assert.equal(migrated.exitCode, 0, migrated.stderr);
    await two.host.recordQemu(domain);
    await two.agent.waitFor(ARRIVED, 30_000);
    await one.agent.waitFor(MIGRATED_AWAY_MESSAGE, 30_000);

    const result = await guest.verifiedResult(300_000, () => `host 2's agent last logged:\n${two.agent.transcript()}`);

    const requests = served(spm);
    const before = requests.filter((request) => request.hostId === 1 && request.time < startedAt);
    const during = requests.filter((request) => request.time >= startedAt && request.time <= completedAt);
    const after = requests.filter((request) => request.hostId === 2 && request.time > completedAt);
    // libvirt holds threshold changes back while the migration runs; the source's safety poll extends meanwhile.
    assert.ok(before.length > 0 && during.length > 0 && after.length > 0, `grew before (${before.length}), during (${during.length}) and after (${after.length}) the migration`);
    // libvirt's job (asked over libvirtd's socket) told the source it was migrating: new space waited for host 2's announcement.
    assert.ok(one.agent.logged('migration destination sees the new space; using it here').length > 0, 'the source used new space only after host 2 announced it');
    for (const agent of [one.agent, two.agent]) assert.deepEqual(agent.logged(DIRECT_UNUSABLE_MESSAGE), [], `${agent.name} asked virsh instead of libvirtd's socket`);
    assert.ok(two.agent.logged("libvirt hook asks to prepare a domain's volumes").length > 0, "host 2's hook handed the incoming domain's prepare to its agent");
    const destination = (await vmStatus(2, domain))!;
    assert.match((await two.host.virsh('dominfo', domain)).stdout, /Persistent:\s+yes/, '--persistent defined the domain on host 2');
    assert.equal(destination.pauses, 0, 'no pause on host 2');
    assert.equal(destination.migration, null);
    assert.equal(await vmStatus(1, domain), undefined, 'host 1 no longer lists the VM');
    const sourcePauses = one.agent.logged('VM paused: a write found no space; extending, then resuming').length;
    assert.equal(sourcePauses, 0, `no pause on host 1; its extensions, in ms from the real migration's start:\n${extensionTimeline(one.agent, startedAt)}`);
    const armedMs = Number(two.agent.logged(ARRIVED)[0]!.armedMs);
    const sourceLatencies = one.agent.logged('volume extended').filter((event) => Number(event.time) >= startedAt && Number(event.time) <= completedAt).map((event) => Number(event.latencyMs));
    process.stdout.write(
      `      virsh migrate --live: ${((completedAt - startedAt) / 1000).toFixed(1)} s; extensions before/during/after: ${before.length}/${during.length}/${after.length}; ` +
        `slowest source extension during it: ${Math.max(0, ...sourceLatencies)} ms; pauses: ${sourcePauses + destination.pauses}; switch-over to armed threshold: ${armedMs} ms; cancelled migration left the VM on host 1; data verified: ${result.bad === 0}\n`,
    );
  });

  it('a VM that ran out of space on the source during the migration (its agent hung) goes on on host 2, which extends it; data intact', async () => {
    const { one, two, domain, guest } = await guestWritingOnHostOne();
    // The source's agent stops answering: the guest fills its free space there and pauses mid-migration.
    process.kill(one.agent.pid!, 'SIGSTOP');
    try {
      const migrating = one.host.virsh('migrate', '--live', domain, two.host.uri, '--migrateuri', 'tcp://127.0.0.1', '--bandwidth', '12');
      await until(async () => /paused/.test((await one.host.virsh('domstate', domain)).stdout), 60_000, 'the guest to pause for lack of space on host 1');
      const migrated = await migrating;
      assert.equal(migrated.exitCode, 0, migrated.stderr);
    } finally {
      process.kill(one.agent.pid!, 'SIGCONT');
    }
    await two.host.recordQemu(domain);
    // The pause the source's agent finds once it runs again: a write had found no space there.
    await one.agent.waitFor('VM paused: a write found no space; extending, then resuming', 30_000);
    await two.agent.waitFor(ARRIVED, 30_000);
    // libvirt resumes a VM that paused for an I/O error during the migration once it arrives (measured with
    // libvirt 9.0); its failed writes are retried there, against host 2's refreshed view, and it goes on growing.
    const result = await guest.verifiedResult(300_000, () => `host 2's agent last logged:\n${two.agent.transcript()}`);
    const destination = (await vmStatus(2, domain))!;
    assert.equal(destination.pausedForNoSpace, false);
    assert.ok(two.agent.logged('volume extended').length > 0, 'host 2 extended the volume after the arrival');
    process.stdout.write(`      source paused mid-migration; on host 2: pauses ${destination.pauses}, extensions ${two.agent.logged('volume extended').length}; data verified: ${result.bad === 0}\n`);
  });
  it('virsh save of a domain paused for lack of space (the storage domain full) on host 1, virsh restore on host 2 once space was added: host 2 gives it room and resumes it, and it goes on growing there; data intact', async () => {
    const { one, two, domain, guest } = await guestWritingOnHostOne();
    const plugin = cluster.lab.plugin;
    const saveFile = path.join(cluster.dir, 'moved.save');
    // The domain fills up: the guest's next write beyond its volume finds no space and pauses it, and no extension can
    // end that pause. Host 1's agent marks the pause in the domain's live metadata, which the save file carries.
    await plugin.create('mig-filler', await plugin.freeBytes());
    try {
      await until(async () => /paused \(I\/O error\)/.test((await one.host.virsh('domstate', '--reason', domain)).stdout), 180_000, 'the guest to pause for lack of space on host 1');
      await until(async () => isPauseMark((await one.host.virsh('metadata', domain, PAUSE_NAMESPACE)).stdout), 30_000, () => `host 1 to mark the domain paused for lack of space; ${one.agent.transcript()}`);
      const saved = await one.host.virsh('save', domain, saveFile);
      assert.equal(saved.exitCode, 0, saved.stderr);
    } finally {
      await plugin.remove('mig-filler');
    }
    await until(async () => (await vmStatus(1, domain)) === undefined, 30_000, 'host 1 to stop watching the saved domain');
    const extensionsOnOne = one.agent.logged('volume extended').length;
    const restored = await two.host.virsh('restore', saveFile);
    assert.equal(restored.exitCode, 0, restored.stderr);
    await two.host.recordQemu(domain);
    // libvirt restores it "paused (migrating)" with no error on any disk, as it would a domain an admin had suspended.
    await two.agent.waitFor(RESTORED_PAUSED_MESSAGE, 60_000);
    await two.agent.waitFor('VM resumed after extension', 60_000);
    // Looked at while the guest still writes (it powers off once it has verified): the mark gone from the live domain.
    await until(async () => {
      const mark = await two.host.virsh('metadata', domain, PAUSE_NAMESPACE);
      return /metadata not found|does not have metadata/i.test(mark.stderr) || (mark.exitCode === 0 && !isPauseMark(mark.stdout));
    }, 30_000, 'the pause mark to be removed from the running domain once resumed');
    assert.match((await two.host.virsh('domstate', domain)).stdout, /running/);
    const result = await guest.verifiedResult(300_000, () => `host 2's agent last logged:\n${two.agent.transcript()}`);
    assert.ok(two.agent.logged('volume extended').length > 1, 'host 2 extended the volume for the resume and after');
    assert.equal(one.agent.logged('volume extended').length, extensionsOnOne, 'host 1 extended nothing once the domain was saved');
    process.stdout.write(`      paused for lack of space and saved on host 1, restored on host 2: resumed there after ${two.agent.logged('VM resumed after extension').map((event) => event.pausedMs).join(', ')} ms; extensions on host 2 ${two.agent.logged('volume extended').length}; data verified: ${result.bad === 0}\n`);
  });
  it('post-copy (virsh migrate --postcopy, then migrate-postcopy): host 2 gives the drive room the moment the guest runs there, before the migration ends; host 1 resumes nothing; data intact', async () => {
    const { spm, one, two, domain, guest } = await guestWritingOnHostOne();
    // Slow enough that the pre-copy phase is still running when the administrator switches to post-copy, and that
    // the post-copy phase (host 2 runs the guest, host 1 still sends it memory) lasts while the guest writes.
    const migrating = one.host.virsh('migrate', '--live', '--postcopy', domain, two.host.uri, '--migrateuri', 'tcp://127.0.0.1', '--bandwidth', '2', '--postcopy-bandwidth', '64');
    await two.agent.waitFor('VM is migrating in: keeping its volumes refreshed until it runs here', 60_000);
    // libvirt's job exists before QEMU's migration (and its post-copy capability) is set up: wait for memory to move.
    await until(async () => /Memory processed:\s+[1-9]/.test((await one.host.virsh('domjobinfo', domain)).stdout), 60_000, 'memory to move from host 1');
    const switched = await one.host.virsh('migrate-postcopy', domain);
    assert.equal(switched.exitCode, 0, switched.stderr);
    const switchedAt = Date.now();
    await two.host.recordQemu(domain);
    await two.agent.waitFor(ARRIVED, 60_000);
    const postCopy = await two.host.virsh('domstate', '--reason', domain);
    const migrated = await migrating;
    const completedAt = Date.now();
    assert.equal(migrated.exitCode, 0, migrated.stderr);
    await one.agent.waitFor(MIGRATED_AWAY_MESSAGE, 30_000);

    const result = await guest.verifiedResult(300_000, () => `host 2's agent last logged:\n${two.agent.transcript()}`);
    const byHostTwo = served(spm).filter((request) => request.hostId === 2);
    const duringPostCopy = byHostTwo.filter((request) => request.time >= switchedAt && request.time <= completedAt);
    assert.ok(two.agent.logged(POST_COPY_MESSAGE).length === 1, 'host 2 saw the VM run there before the migration ended');
    // The room given the moment the guest ran on host 2, while libvirt there answered no block query.
    assert.ok(duringPostCopy.length > 0, `host 2 extended the volume during the post-copy phase:\n${extensionTimeline(two.agent, switchedAt)}`);
    const destination = (await vmStatus(2, domain))!;
    assert.equal(destination.pausedForNoSpace, false);
    assert.equal(destination.migration, null, 'host 2 watches the VM as its own once the migration ended');
    assert.ok(destination.drives[0]!.thresholdBytes !== null, 'armed once the migration ended');
    assert.equal(one.agent.logged('VM resumed after extension').length, 0, "host 1 resumed nothing: a post-copy pause is never tideline's");
    // A guest writing faster than a chunk per post-copy phase pauses until libvirt allows the resume (the migration's end); said, not asserted away.
    process.stdout.write(
      `      virsh migrate --postcopy: host 2 said "${postCopy.stdout.trim()}" after the switch; post-copy phase ${((completedAt - switchedAt) / 1000).toFixed(1)} s, ` +
        `host 2 extensions in it: ${duringPostCopy.length}, after: ${byHostTwo.length - duringPostCopy.length}; pauses on host 2: ${destination.pauses} (${Math.round(destination.pausedMsTotal)} ms paused in all); data verified: ${result.bad === 0}\n`,
    );
  });
});
