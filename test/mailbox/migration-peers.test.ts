import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { silentLogger } from '../../src/log/logger.js';
import { InventoryPublisher } from '../../src/mailbox/inventory-publisher.js';
import { Mailbox } from '../../src/mailbox/mailbox.js';
import { MailboxMigrationPeers } from '../../src/mailbox/migration-peers.js';
import { systemClock } from '../../src/util/clock.js';
import { MiB } from '../../src/util/sizes.js';
import type { StoragePlugin } from '../../plugins/types.js';

/** Two hosts of a live migration on one mailbox file: the destination announces, the source waits for it. */
describe('migration peers through the mailbox', () => {
  let dir: string;
  const hosts: Array<{ mailbox: Mailbox; publisher: InventoryPublisher; peers: MailboxMigrationPeers }> = [];

  async function host(hostId: number): Promise<MailboxMigrationPeers> {
    const mailbox = await Mailbox.open(path.join(dir, 'mailbox'));
    const plugin = { activeVolumes: async () => ['vm1-vda'] } as unknown as StoragePlugin;
    const publisher = new InventoryPublisher({ mailbox, hostId, plugin, clock: systemClock, logger: silentLogger });
    await publisher.start();
    const peers = new MailboxMigrationPeers({ mailbox, hostId, publisher, clock: systemClock, logger: silentLogger, waitMs: 400 });
    hosts.push({ mailbox, publisher, peers });
    return peers;
  }

  beforeEach(async () => {
    dir = await mkdtemp('/var/tmp/tideline-peers-test-');
    await Mailbox.init(path.join(dir, 'mailbox'), { maxHosts: 4 });
  });
  afterEach(async () => {
    for (const { publisher, mailbox } of hosts.splice(0)) {
      await publisher.stop();
      await mailbox.close();
    }
    await rm(dir, { recursive: true, force: true });
  });

  it('resolves once the destination announces the volume at the size asked for or more', async () => {
    const source = await host(1);
    const destination = await host(2);
    await destination.announceIncomingView('vm1-vda', 512 * MiB);
    const waiting = source.awaitDestinationView('vm1-vda', 768 * MiB, new AbortController().signal);
    let done = false;
    void waiting.then(() => (done = true));
    await new Promise((resolve) => setTimeout(resolve, 150));
    assert.equal(done, false, 'a view below the new size is not enough');
    await destination.announceIncomingView('vm1-vda', 1024 * MiB);
    assert.equal(await waiting, 'announced');
  });

  it('stops waiting as soon as it is told the migration ended, without an error', async () => {
    const source = await host(1);
    await host(2);
    const ended = new AbortController();
    const started = Date.now();
    setTimeout(() => ended.abort(), 100);
    assert.equal(await source.awaitDestinationView('vm1-vda', 768 * MiB, ended.signal), 'abandoned');
    assert.ok(Date.now() - started < 300, 'well before the 400 ms the wait would last');
  });

  it("refuses in time with a typed error when no host announces it: its own announcement, another volume's, or a withdrawn one do not count", async () => {
    const source = await host(1);
    const destination = await host(2);
    await source.announceIncomingView('vm1-vda', 2048 * MiB);
    await destination.announceIncomingView('vm2-vda', 2048 * MiB);
    await destination.announceIncomingView('vm1-vda', 2048 * MiB);
    await destination.announceIncomingView('vm1-vda', undefined);
    await assert.rejects(source.awaitDestinationView('vm1-vda', 768 * MiB, new AbortController().signal), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'destination-view-stale');
      assert.match(error.message, /no host announced volume vm1-vda incoming .* start tideline-agent there/);
      return true;
    });
  });

  it('names the destination that announced the volume but still sees it smaller: its agent is up, its refresh is not', async () => {
    const source = await host(1);
    const destination = await host(2);
    await destination.announceIncomingView('vm1-vda', 512 * MiB);
    await assert.rejects(source.awaitDestinationView('vm1-vda', 768 * MiB, new AbortController().signal), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'destination-view-stale');
      assert.match(error.message, /destination host 2 announced volume vm1-vda incoming but still sees it at 536870912 bytes, not 805306368/);
      return true;
    });
  });
});
