import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { decodeHeartbeat, encodeHeartbeat, stalledFor } from '../../src/lease/stall-watchdog.js';

describe('SPM stall watchdog (sanlock)', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'tideline-heartbeat-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('measures how long the holder has stood still, and only for that holder once it has beaten', async () => {
    const file = path.join(dir, 'beat');
    assert.equal(await stalledFor(file, 42, 10_000), undefined, 'no heartbeat yet: still waiting for the lease, not stalled');
    await writeFile(file, encodeHeartbeat(42, 1_000));
    assert.equal(await stalledFor(file, 42, 13_500), 12_500);
    assert.equal(await stalledFor(file, 43, 13_500), undefined, "another process's heartbeat says nothing about this one");
    await writeFile(file, 'garbage');
    assert.equal(await stalledFor(file, 42, 13_500), undefined);
  });

  it('property: what is written reads back; anything else is no heartbeat', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 4_194_304 }), fc.integer({ min: 0, max: 2 ** 45 }), (pid, atMs) => assert.deepEqual(decodeHeartbeat(encodeHeartbeat(pid, atMs)), { pid, atMs })));
    fc.assert(fc.property(fc.string(), (text) => {
      const decoded = decodeHeartbeat(text);
      assert.ok(decoded === undefined || (Number.isSafeInteger(decoded.pid) && Number.isSafeInteger(decoded.atMs)));
    }));
  });
});
