import assert from 'node:assert/strict';
import type { StoragePlugin } from '../../plugins/types.js';
import { volumeService } from '../../src/agent/volume-service.js';
import { FakeStorage } from '../helpers/fake-vm.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { execaRunner } from '../../src/util/runner.js';
import { silentLogger } from '../../src/log/logger.js';

/** Activation on this host through the agent: the inventory follows at once, and a VM's disk is never pulled from under it. */
describe('volume service: activation on this host', () => {
  function world(usedBy: Record<string, string> = {}) {
    const calls: string[] = [];
    const plugin = {
      domain: '/srv/lab',
      activate: async (volume: string) => { calls.push(`activate ${volume}`); return `/dev/sd1/${volume}`; },
      refresh: async (volume: string) => { calls.push(`refresh ${volume}`); return 64 << 20; },
      deactivate: async (volume: string) => void calls.push(`deactivate ${volume}`),
    } as unknown as StoragePlugin;
    const service = volumeService({
      plugin,
      logger: silentLogger,
      extender: new FakeStorage(new FakeClock()),
      run: execaRunner,
      publishInventory: async () => void calls.push('publish inventory'),
      usedBy: (volume) => usedBy[volume],
    });
    return { calls, service };
  }

  it('activates, refreshes, and publishes the inventory before answering with the device and the size seen', async () => {
    const { calls, service } = world();
    assert.deepEqual(await service.activate('web-vda'), { path: '/dev/sd1/web-vda', sizeBytes: 64 << 20 });
    assert.deepEqual(calls, ['activate web-vda', 'refresh web-vda', 'publish inventory']);
    await service.deactivate('web-vda');
    assert.deepEqual(calls.slice(3), ['deactivate web-vda', 'publish inventory']);
  });

  it("refuses the hook's prepare for another storage domain than the one it serves, naming both, and touches nothing", async () => {
    const { calls, service } = world();
    for (const request of [{ loopDomain: '/srv/other' }, { vg: 'tide' }, {}]) {
      await assert.rejects(service.prepareDomain({ domain: 'web', xml: '<domain/>', ...request }), (error: Error & { code?: string }) => {
        assert.equal(error.code, 'storage-domain-mismatch');
        assert.match(error.message, /this agent serves \/srv\/lab/);
        return true;
      });
    }
    assert.deepEqual(calls, []);
  });

  it('refuses to deactivate the disk of a VM this agent watches, naming the VM, and touches nothing', async () => {
    const { calls, service } = world({ 'db-vda': 'db01' });
    await assert.rejects(service.deactivate('db-vda'), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'volume-in-use');
      assert.match(error.message, /volume db-vda is the disk of VM db01 on this host; stop the VM/);
      return true;
    });
    assert.deepEqual(calls, []);
  });
});
