import assert from 'node:assert/strict';
import { execa } from 'execa';
import { isAlive } from '../../src/util/process-alive.js';

describe('isAlive', () => {
  it('is true for a running process, false for one that ended, and false for a zombie its parent has not reaped', async () => {
    // The shell starts `true` in the background, then becomes `sleep`, which never reaps it: a zombie for as long as it sleeps.
    const parent = execa('sh', ['-c', 'true & echo $!; exec sleep 5'], { reject: false, timeout: 20_000 });
    try {
      const zombie = await new Promise<number>((resolve) => parent.stdout!.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim()))));
      const deadline = Date.now() + 5_000;
      while (isAlive(zombie) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      assert.equal(isAlive(zombie), false, 'a zombie has ended');
      assert.equal(isAlive(parent.pid!), true, 'its parent still runs');
      assert.equal(isAlive(process.pid), true);
    } finally {
      parent.kill('SIGKILL');
      await parent;
    }
    assert.equal(isAlive(parent.pid!), false);
  });
});
