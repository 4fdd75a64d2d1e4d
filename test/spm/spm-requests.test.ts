import assert from 'node:assert/strict';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { LoopPlugin } from '../../plugins/loop/index.js';
import type { StorageLease } from '../../src/lease/storage-lease.js';
import { Operation, encodeRequestSlot } from '../../src/mailbox/format.js';
import { Mailbox } from '../../src/mailbox/mailbox.js';
import { MailboxExtender, MailboxRequestRefusedError } from '../../src/mailbox/mailbox-extender.js';
import { silentLogger } from '../../src/log/logger.js';
import { SpmService } from '../../src/spm/spm-service.js';
import { VIRTUAL_SIZE_TAG } from '../../src/spm/validate.js';
import { systemClock } from '../../src/util/clock.js';
import { execaRunner } from '../../src/util/runner.js';
import { MiB } from '../../src/util/sizes.js';
import { SpmWorld } from './helpers/spm-world.js';
import { pino } from 'pino';

/**
 * The SPM against a real mailbox file (direct I/O), a real storage lease and a
 * real loop domain: every kind of bad request gets its own error reply and
 * changes nothing.
 */
describe('SPM: requests through the mailbox', function () {
  this.timeout(30_000);
  let world: SpmWorld;
  let dir: string;
  let plugin: LoopPlugin;
  let hostMailbox: Mailbox;
  let lease: StorageLease;
  let spm: SpmService;
  let host: MailboxExtender;
  const spmLog: Array<{ msg: string }> = [];

  before(async () => {
    const spmLogger = pino({ level: 'info' }, { write: (line: string) => void spmLog.push(JSON.parse(line) as { msg: string }) });
    // Every slot every 5 ms, no wake-ups: several cases write slots raw, as a broken or old host would (wake-ups: spm-wake-up.test.ts).
    world = await SpmWorld.start({ capacityBytes: 2048 * MiB, logger: spmLogger, spm: { pollIdleMs: 5, wakePollMs: 0 } });
    ({ dir, plugin, hostMailbox, lease, spm, host } = world);
    // A 1 GiB qcow2 image can use a little over 1 GiB; the SPM enforces that cap.
    await plugin.create('vm1-vda', 64 * MiB, { [VIRTUAL_SIZE_TAG]: String(1024 * MiB) });
    await plugin.create('vm2-vda', 64 * MiB);
  });
  after(async () => {
    await world?.close();
  });

  async function refusal(work: Promise<unknown>): Promise<MailboxRequestRefusedError> {
    const error = await work.then(() => undefined, (caught: unknown) => caught);
    assert.ok(error instanceof MailboxRequestRefusedError, `expected a refusal, got ${String(error)}`);
    return error;
  }

  async function sizes(): Promise<number[]> {
    return Promise.all(['vm1-vda', 'vm2-vda'].map(async (volume) => (await plugin.describe(volume)).sizeBytes));
  }

  it('extends to the absolute size asked for, and many requests can be in flight at once', async () => {
    const results = await Promise.all([host.extend('vm1-vda', 128 * MiB), host.extend('vm2-vda', 96 * MiB)]);
    assert.deepEqual(results, [128 * MiB, 96 * MiB]);
    assert.deepEqual(await sizes(), [128 * MiB, 96 * MiB]);
    // Replaying an absolute size is harmless.
    assert.equal(await host.extend('vm1-vda', 128 * MiB), 128 * MiB);
  });

  it('refuses an unknown volume, a shrink, a size beyond the cap, and a full domain, each with its own code', async () => {
    const before = await sizes();
    assert.equal((await refusal(host.extend('nosuch-vda', 128 * MiB))).code, 'volume-not-found');
    const shrink = await refusal(host.extend('vm1-vda', 64 * MiB));
    assert.equal(shrink.code, 'shrink-refused');
    assert.match(shrink.message, /already 134217728 bytes and volumes never shrink/);
    assert.equal((await refusal(host.extend('vm1-vda', 1100 * MiB))).code, 'cap-reached');
    const full = await refusal(host.extend('vm2-vda', 4096 * MiB));
    assert.equal(full.code, 'domain-full');
    assert.match(full.message, /add space to the VG/);
    assert.deepEqual(await sizes(), before, 'a refused request changed a volume');
  });

  it("follows the image's virtual size past the recorded cap (an admin's blockresize or qemu-img resize), and refuses beyond what the image allows", async () => {
    await plugin.create('vm7-vda', 64 * MiB, { [VIRTUAL_SIZE_TAG]: String(256 * MiB) });
    const device = await plugin.activate('vm7-vda');
    try {
      await execaRunner('qemu-img', ['create', '-q', '-f', 'qcow2', device, String(256 * MiB)], { timeoutMs: 30_000 });
      // Within the recorded cap: served as always.
      assert.equal(await host.extend('vm7-vda', 192 * MiB), 192 * MiB);
      assert.equal((await refusal(host.extend('vm7-vda', 600 * MiB))).code, 'cap-reached', 'a 256 MiB image cannot use 600 MiB');
      await execaRunner('qemu-img', ['resize', '-q', '-f', 'qcow2', device, String(1024 * MiB)], { timeoutMs: 30_000 });
      assert.equal(await host.extend('vm7-vda', 600 * MiB), 600 * MiB);
      assert.equal((await plugin.describe('vm7-vda')).tags[VIRTUAL_SIZE_TAG], String(1024 * MiB), 'the SPM records the size the image has now');
      assert.ok(spmLog.some((line) => line.msg === "the volume's image grew (its header's virtual size): recording it, the cap follows"));
      assert.equal((await refusal(host.extend('vm7-vda', 1100 * MiB))).code, 'cap-reached', 'the cap is the grown image, not unbounded');
      assert.equal((await plugin.describe('vm7-vda')).sizeBytes, 600 * MiB);
    } finally {
      await plugin.deactivate('vm7-vda');
    }
  });

  it('answers a request that reuses an already served sequence number with stale-sequence, and serves nothing', async () => {
    const before = await sizes();
    // A host that lost its state writes sequence 1 again into a free message.
    const replayed = encodeRequestSlot({ hostId: 2, generation: 999, messages: [undefined, undefined, undefined, undefined, undefined, undefined, undefined, { sequence: 1, operation: Operation.Extend, volume: 'vm2-vda', targetBytes: 512 * MiB, virtualBytes: 0 }] });
    await hostMailbox.writeRawBlock('request', 2, replayed);
    const deadline = Date.now() + 5_000;
    let reply;
    while (Date.now() < deadline) {
      const replies = await hostMailbox.readReplies(2);
      reply = replies.kind === 'valid' ? replies.value.messages[7] : undefined;
      if (reply?.sequence === 1) break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.deepEqual(reply, { sequence: 1, status: 5, resultBytes: 0 });
    assert.deepEqual(await sizes(), before);
  });

  it("writes a host's replies again when it resends a request already answered (the reply block was lost to a storage error)", async () => {
    await plugin.create('vm6-vda', 64 * MiB, { [VIRTUAL_SIZE_TAG]: String(1024 * MiB) });
    const request = { sequence: 1, operation: Operation.Extend, volume: 'vm6-vda', targetBytes: 192 * MiB, virtualBytes: 0 };
    const replyTo = async (generation: number) => {
      await hostMailbox.writeRequests({ hostId: 6, generation, messages: [request, undefined, undefined, undefined, undefined, undefined, undefined, undefined] });
      const deadline = Date.now() + 5_000;
      while (Date.now() < deadline) {
        const replies = await hostMailbox.readReplies(6);
        if (replies.kind === 'valid' && replies.value.messages[0]?.sequence === 1) return replies.value.messages[0];
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      return undefined;
    };
    const servedBefore = spm.counters.served;
    assert.deepEqual(await replyTo(1), { sequence: 1, status: 0, resultBytes: 192 * MiB });
    await hostMailbox.writeRawBlock('reply', 6, Buffer.alloc(4096, 0x5a));
    assert.equal((await hostMailbox.readReplies(6)).kind, 'invalid');
    // The host's resend: the same request, the slot rewritten with a new generation.
    assert.deepEqual(await replyTo(2), { sequence: 1, status: 0, resultBytes: 192 * MiB }, 'the SPM wrote the lost reply again');
    assert.equal(spm.counters.served - servedBefore, 1, 'and served nothing twice');
    await hostMailbox.writeRequests({ hostId: 6, generation: 3, messages: new Array(8).fill(undefined) });
    await plugin.remove('vm6-vda');
  });

  it('ignores and counts a corrupted slot, and keeps serving the other hosts', async () => {
    const corruptBefore = spm.counters.corruptSlots;
    await hostMailbox.writeRawBlock('request', 5, Buffer.alloc(4096, 0xa5));
    const other = await MailboxExtender.open({ mailbox: hostMailbox, hostId: 3, plugin, clock: systemClock, logger: silentLogger, pollMs: 5 });
    try {
      assert.equal(await other.extend('vm2-vda', 160 * MiB), 160 * MiB);
      assert.equal(spm.counters.corruptSlots, corruptBefore + 1, 'the corrupted slot was not counted exactly once');
    } finally {
      other.close();
    }
  });

  it('counts every garbage block a host writes, and logs that host at most once a minute (no log flooding)', async () => {
    const counted = spm.counters.corruptSlots;
    const warned = () => spmLog.filter((line) => line.msg === 'ignoring an unreadable request slot').length;
    const warnedBefore = warned();
    for (let block = 1; block <= 30; block += 1) {
      await hostMailbox.writeRawBlock('request', 7, Buffer.alloc(4096, block));
      const deadline = Date.now() + 5_000;
      while (spm.counters.corruptSlots < counted + block && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 2));
    }
    assert.equal(spm.counters.corruptSlots - counted, 30, 'every garbage block counts');
    assert.equal(warned() - warnedBefore, 1, 'one warning for the minute');
    await hostMailbox.writeRawBlock('request', 7, Buffer.alloc(4096));
  });

  it('creates a thin volume with its qcow2 header, and refuses a duplicate or an initial size beyond the cap', async () => {
    assert.equal(await host.create('vm3-vda', 64 * MiB, 1024 * MiB), 64 * MiB);
    const info = await plugin.describe('vm3-vda');
    assert.equal(info.tags[VIRTUAL_SIZE_TAG], String(1024 * MiB));
    assert.equal(info.tags['created-by-host'], '2');
    const image = JSON.parse((await execaRunner('qemu-img', ['info', '--output=json', '-f', 'qcow2', path.join(dir, 'domain', 'vm3-vda.img')])).stdout) as { 'virtual-size': number };
    assert.equal(image['virtual-size'], 1024 * MiB);
    assert.equal((await refusal(host.create('vm3-vda', 64 * MiB, 1024 * MiB))).code, 'volume-exists');
    assert.equal((await refusal(host.create('vm4-vda', 2048 * MiB, 1024 * MiB))).code, 'cap-reached');
    await assert.rejects(plugin.describe('vm4-vda'), { code: 'volume-not-found' });
  });

  it('deletes a volume only after zeroing it, and refuses one that is active on the SPM host', async () => {
    const file = path.join(dir, 'domain', 'vm3-vda.img');
    await plugin.activate('vm3-vda');
    assert.equal((await refusal(host.remove('vm3-vda'))).code, 'volume-in-use');
    await plugin.deactivate('vm3-vda');
    // Guest data at 32 MiB; an open handle keeps reading the file after it is unlinked.
    const handle = await open(file, 'r+');
    try {
      await handle.write(Buffer.alloc(4096, 0x77), 0, 4096, 32 * MiB);
      await host.remove('vm3-vda');
      await assert.rejects(plugin.describe('vm3-vda'), { code: 'volume-not-found' });
      const { buffer } = await handle.read(Buffer.alloc(4096), 0, 4096, 32 * MiB);
      assert.ok(buffer.every((byte) => byte === 0), 'the deleted volume still held guest data');
    } finally {
      await handle.close();
    }
    assert.equal((await refusal(host.remove('vm3-vda'))).code, 'volume-not-found');
  });

  it('creates a child over a parent (backing file, parent tag, the parent\'s virtual size), refuses a missing parent, and keeps a parent while it has children', async () => {
    assert.equal(await host.createChild('vm1-vda-snap1', 'vm1-vda', 32 * MiB), 32 * MiB);
    const info = await plugin.describe('vm1-vda-snap1');
    assert.equal(info.tags.parent, 'vm1-vda');
    assert.equal(info.tags[VIRTUAL_SIZE_TAG], String(1024 * MiB));
    const image = JSON.parse((await execaRunner('qemu-img', ['info', '--output=json', '-f', 'qcow2', path.join(dir, 'domain', 'vm1-vda-snap1.img')])).stdout) as { 'backing-filename': string; 'backing-filename-format': string };
    assert.equal(image['backing-filename'], path.join(dir, 'domain', 'vm1-vda.img'));
    assert.equal(image['backing-filename-format'], 'qcow2');
    assert.equal((await refusal(host.createChild('orphan', 'nosuch', 32 * MiB))).code, 'volume-not-found');
    await assert.rejects(plugin.describe('orphan'), { code: 'volume-not-found' });
    // vm2-vda was not made by tideline: no virtual size, nothing to build on.
    assert.equal((await refusal(host.createChild('vm2-child', 'vm2-vda', 32 * MiB))).code, 'spm-failed');
    assert.equal((await refusal(host.remove('vm1-vda'))).code, 'volume-has-children');
    assert.equal((await plugin.describe('vm1-vda')).name, 'vm1-vda');
    // After an inner commit the layer above stands on another parent: the SPM records it, and only for a parent that exists.
    await host.reparent('vm1-vda-snap1', 'vm2-vda');
    assert.equal((await plugin.describe('vm1-vda-snap1')).tags.parent, 'vm2-vda');
    assert.equal((await refusal(host.reparent('vm1-vda-snap1', 'nosuch'))).code, 'volume-not-found');
    assert.equal((await refusal(host.reparent('vm1-vda-snap1', 'vm1-vda-snap1'))).code, 'invalid-request');
    await host.remove('vm1-vda-snap1');
  });

  it("records what a child's image says after a block job (rebased onto another layer, then pulled in full), and a parent whose children no longer use it can be deleted", async () => {
    await host.create('pull-base', 32 * MiB, 256 * MiB);
    await host.create('pull-mid', 32 * MiB, 256 * MiB);
    await host.createChild('pull-top', 'pull-base', 32 * MiB);
    const top = path.join(dir, 'domain', 'pull-top.img');
    // `virsh blockpull --base` leaves the top backed by a lower layer; here another volume, as qemu-img rebase would.
    await execaRunner('qemu-img', ['rebase', '-u', '-f', 'qcow2', '-F', 'qcow2', '-b', plugin.backingPath('pull-mid'), top], { timeoutMs: 30_000 });
    await host.followImage('pull-top');
    assert.equal((await plugin.describe('pull-top')).tags.parent, 'pull-mid', 'the parent is what the image names');
    // QEMU writes the path the host's libvirt knows (a host's own view of the volume): the SPM reads it as that volume.
    const rebase = (backing: string) => execaRunner('qemu-img', ['rebase', '-u', '-f', 'qcow2', '-F', 'qcow2', '-b', backing, top], { timeoutMs: 30_000 });
    await rebase(path.join(dir, 'domain', 'hosts', '3', 'pull-base'));
    await host.followImage('pull-top');
    assert.equal((await plugin.describe('pull-top')).tags.parent, 'pull-base');
    // A backing file that is no volume of the domain: the record is left as it is, never dropped on a guess.
    await rebase('/var/tmp/not-a-tideline-volume.qcow2');
    await host.followImage('pull-top');
    assert.equal((await plugin.describe('pull-top')).tags.parent, 'pull-base');
    await rebase(plugin.backingPath('pull-mid'));
    await host.followImage('pull-top');
    // A full `virsh blockpull`: no backing file any more. Nobody told the SPM; deleting the old parent asks the images.
    await execaRunner('qemu-img', ['rebase', '-u', '-f', 'qcow2', '-b', '', top], { timeoutMs: 30_000 });
    await host.remove('pull-mid');
    assert.equal((await plugin.describe('pull-top')).tags.parent, undefined, 'the stale parent tag is gone');
    assert.ok(spmLog.some((line) => line.msg === "the volume's image has no backing volume any more (block pull): its parent record is removed"));
    await assert.rejects(plugin.describe('pull-mid'), { code: 'volume-not-found' });
    // A child whose image still names its parent keeps holding it.
    await host.createChild('pull-child', 'pull-base', 32 * MiB);
    assert.equal((await refusal(host.remove('pull-base'))).code, 'volume-has-children');
    assert.equal((await refusal(host.followImage('nosuch'))).code, 'volume-not-found');
    for (const volume of ['pull-child', 'pull-top', 'pull-base']) await host.remove(volume);
  });

  it('reduces a volume nobody uses to its image end plus the free target, keeps its data, refuses an active top, and reduces an active inner layer', async () => {
    await host.create('vm5-vda', 64 * MiB, 1024 * MiB);
    const device = await plugin.activate('vm5-vda');
    assert.equal((await execaRunner('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 0 40M', device])).exitCode, 0);
    await plugin.deactivate('vm5-vda');
    await host.extend('vm5-vda', 512 * MiB);
    assert.equal((await refusal(host.reduce('nosuch', 0))).code, 'volume-not-found');
    await plugin.activate('vm5-vda');
    assert.equal((await refusal(host.reduce('vm5-vda', 16 * MiB))).code, 'volume-in-use');
    assert.equal((await plugin.describe('vm5-vda')).sizeBytes, 512 * MiB, 'a refused reduce changes nothing');
    await plugin.deactivate('vm5-vda');

    const reduced = await host.reduce('vm5-vda', 16 * MiB);
    assert.ok(reduced > 40 * MiB && reduced <= 60 * MiB, `reduced to ${reduced / MiB} MiB: the 40 MiB written, metadata and 16 MiB free`);
    assert.equal((await plugin.describe('vm5-vda')).sizeBytes, reduced);
    const file = path.join(dir, 'domain', 'vm5-vda.img');
    assert.equal((await execaRunner('qemu-io', ['-f', 'qcow2', '-c', 'read -P 0x5a 0 40M', file])).stdout.includes('Pattern verification failed'), false);
    assert.equal((await execaRunner('qemu-img', ['check', '-f', 'qcow2', file], { acceptExitCodes: [3] })).exitCode, 0, 'the image is intact');
    assert.equal(await host.reduce('vm5-vda', 16 * MiB), reduced, 'reducing again changes nothing');
    assert.equal(await host.reduce('vm5-vda', 256 * MiB), reduced, 'a reduce never grows a volume');

    // Under a child it is an inner layer: a running VM holds it open read-only, so it may be reduced active, and this host sees the new size at once.
    await host.extend('vm5-vda', 512 * MiB);
    await host.createChild('vm5-vda-top', 'vm5-vda', 32 * MiB);
    await plugin.activate('vm5-vda');
    assert.equal(await host.reduce('vm5-vda', 16 * MiB), reduced);
    assert.equal(await plugin.visibleBytes('vm5-vda'), reduced, 'the active inner layer was refreshed here');
    assert.equal(await plugin.isActive('vm5-vda'), true, 'and it stays active');
    await plugin.deactivate('vm5-vda');
    await host.remove('vm5-vda-top');
    await host.remove('vm5-vda');
  });

  it("refuses to delete or reduce a volume another host's inventory lists as active, naming the host; deletes it once the host lets go", async () => {
    await host.create('vm8-vda', 64 * MiB, 1024 * MiB);
    await hostMailbox.writeInventory(4, ['vm8-vda', 'other-vda'], 12);
    const refused = await refusal(host.remove('vm8-vda'));
    assert.equal(refused.code, 'volume-in-use');
    assert.match(refused.message, /active on host 4/);
    assert.equal((await refusal(host.reduce('vm8-vda', 16 * MiB))).code, 'volume-in-use');
    assert.equal((await plugin.describe('vm8-vda')).sizeBytes, 64 * MiB, 'nothing changed');
    await hostMailbox.writeRawBlock('inventory', 4, Buffer.alloc(4096, 0x77));
    assert.match((await refusal(host.remove("vm8-vda"))).message, /inventory could not be read/);
    await hostMailbox.writeInventory(4, ['other-vda'], 13);
    await host.remove('vm8-vda');
    await assert.rejects(plugin.describe('vm8-vda'), { code: 'volume-not-found' });
    await hostMailbox.clearInventory(4);
  });

  it('stops serving the moment the lease is lost', async () => {
    const servedBefore = spm.counters.served;
    await lease.release();
    const outcome = await Promise.race([world.served, new Promise((resolve) => setTimeout(() => resolve('still serving'), 2_000))]);
    assert.equal(outcome, 'lease-lost');
    const late = host.extend('vm1-vda', 256 * MiB);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(spm.counters.served, servedBefore);
    assert.equal((await plugin.describe('vm1-vda')).sizeBytes, 128 * MiB);
    host.close();
    await late.catch(() => undefined);
  });
});
