import assert from 'node:assert/strict';
import { execa } from 'execa';

/** The benchmark's quick mode runs in the test suite so it cannot rot; speeds are not judged here. */
describe('npm run bench -- --quick', function () {
  this.timeout(180_000);

  it('measures every figure for tideline and its baseline and prints the table', async () => {
    const result = await execa('node', ['--import', 'tsx', 'bench/run.ts', '--quick'], { reject: false, timeout: 170_000 });
    assert.equal(result.exitCode, 0, result.stderr);
    for (const figure of ['mailbox round trip, 1 host', 'mailbox round trip, 50 hosts']) {
      for (const policy of ['vdsm-4.5', 'tideline']) {
        assert.match(result.stdout, new RegExp(`${figure} +│ ${policy} +│ \\d+ +│ [\\d.]+ ms`), `no ${policy} row for ${figure}:\n${result.stdout}`);
      }
    }
    assert.match(result.stdout, /x faster|x slower/);
  });
});
