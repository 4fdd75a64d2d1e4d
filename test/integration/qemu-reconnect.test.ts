import assert from 'node:assert/strict';
import path from 'node:path';
import { LabWorld } from './helpers/lab-world.js';
import { QmpProxy } from './helpers/qmp-proxy.js';
import { until, watch } from './helpers/watch.js';
import type { QemuAttachment } from '../../src/agent/qemu-attachment.js';
import { QmpDisconnectedError } from '../../src/qmp/errors.js';

describe('real QEMU: QMP connection lost mid-command', function () {
  this.timeout(5 * 60_000);
  let world: LabWorld;
  let attachment: QemuAttachment | undefined;
  let proxy: QmpProxy | undefined;

  beforeEach(async () => {
    world = await LabWorld.create();
  });
  afterEach(async () => {
    attachment?.stop();
    await proxy?.stop();
    await world.dispose();
  });

  it('fails the pending command with a typed error, reconnects, and keeps extending', async () => {
    const vm = await world.startVm({ name: 'reconnect', writeMib: 1024 });
    proxy = new QmpProxy(path.join(world.dir, 'proxy.qmp'), vm.qmpSocket);
    await proxy.start();
    attachment = await watch(world, vm, { socketPath: proxy.listenPath });
    let reconnects = 0;
    attachment.client.on('connected', () => (reconnects += 1));
    await until(() => vm.progress.ready, 60_000, 'the guest to start writing');

    proxy.cutOnNext('query-version');
    await assert.rejects(attachment.client.execute('query-version'), (error: unknown) => error instanceof QmpDisconnectedError && error.code === 'qmp-disconnected');
    const extensionsAtCut = attachment.status()!.drives[0]!.extensions;
    await until(() => reconnects === 1 && attachment!.client.connected, 10_000, 'the client to reconnect');

    const progress = await vm.finished();
    assert.equal(proxy.cuts, 1);
    assert.ok(progress.result, `guest gave no result; console in ${vm.consoleLog}`);
    assert.equal(progress.result.bad, 0);
    assert.ok(attachment.status()!.drives[0]!.extensions > extensionsAtCut, 'no extension after the reconnect');
  });
});
