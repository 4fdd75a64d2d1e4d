import assert from 'node:assert/strict';
import { isPauseMark, PAUSE_NAMESPACE, pauseMarkXml, PauseMarker } from '../../src/libvirt/pause-marker.js';
import { silentLogger } from '../../src/log/logger.js';

/** A libvirt whose metadata calls finish when the test says, recording what each one set. */
class SlowMetadata {
  readonly calls: Array<string | undefined> = [];
  private finish: Array<() => void> = [];
  failNext = false;

  setLiveMetadata(_domain: string, namespace: string, _key: string, xml: string | undefined): Promise<void> {
    assert.equal(namespace, PAUSE_NAMESPACE);
    this.calls.push(xml);
    const fail = this.failNext;
    this.failNext = false;
    return new Promise((resolve, reject) => this.finish.push(() => (fail ? reject(new Error('domain not found')) : resolve())));
  }

  async finishAll(): Promise<void> {
    while (this.finish.length > 0) {
      this.finish.shift()!();
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
}

describe('the pause mark in a domain\'s live metadata', () => {
  it('is recognised as libvirt prints it back, with or without a namespace prefix, and only then', () => {
    assert.ok(isPauseMark(pauseMarkXml(['vda', 'vdb[2]'])));
    assert.ok(isPauseMark('<tideline:paused-for-space xmlns:tideline="https://tideline.dev/xmlns/paused-for-space/1" drives="vda"/>'));
    assert.equal(isPauseMark(''), false);
    assert.equal(isPauseMark('<thin chunk="1G"/>'), false);
  });

  it('names only drives that are plain names (nothing that could break the element)', () => {
    assert.equal(pauseMarkXml(['vda', 'x" onload="y']), '<paused-for-space drives="vda"/>');
  });

  it('a pause that ends while its mark is still being written leaves no mark behind', async () => {
    const libvirt = new SlowMetadata();
    const marker = new PauseMarker(libvirt, 'web', silentLogger);
    marker.mark(['vda']);
    marker.clear();
    marker.mark(['vda']);
    marker.clear();
    await libvirt.finishAll();
    assert.deepEqual(libvirt.calls, [pauseMarkXml(['vda']), undefined], 'one write, then the last wish: removed');
  });

  it('writes nothing for a domain that was never marked, and clears a mark it found at a restore', async () => {
    const libvirt = new SlowMetadata();
    const marker = new PauseMarker(libvirt, 'web', silentLogger);
    marker.clear();
    await libvirt.finishAll();
    assert.deepEqual(libvirt.calls, []);
    marker.found(pauseMarkXml(['vda']));
    marker.clear();
    await libvirt.finishAll();
    assert.deepEqual(libvirt.calls, [undefined]);
  });

  it('a failed write is given up (the domain is gone) and the next change tries again', async () => {
    const libvirt = new SlowMetadata();
    const marker = new PauseMarker(libvirt, 'web', silentLogger);
    libvirt.failNext = true;
    marker.mark(['vda']);
    await libvirt.finishAll();
    marker.clear();
    await libvirt.finishAll();
    assert.deepEqual(libvirt.calls, [pauseMarkXml(['vda'])], 'a mark never written needs no removal');
    marker.mark(['vda']);
    await libvirt.finishAll();
    marker.clear();
    await libvirt.finishAll();
    assert.deepEqual(libvirt.calls, [pauseMarkXml(['vda']), pauseMarkXml(['vda']), undefined]);
  });
});
