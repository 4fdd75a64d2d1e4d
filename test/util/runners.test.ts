import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CommandFailedError } from '../../src/errors.js';
import { isAlive } from '../../src/util/process-alive.js';
import { lightRunner } from '../../src/util/light-runner.js';
import { execaRunner, type Runner } from '../../src/util/runner.js';

/** Both runners keep one contract, checked with real processes: what one does, the other does too. */
for (const [name, run] of [['execaRunner', execaRunner], ['lightRunner', lightRunner]] as Array<[string, Runner]>) {
  describe(`${name}: the command runner contract`, () => {
    let dir: string;
    before(async () => {
      dir = await mkdtemp(path.join(tmpdir(), 'tideline-runner-'));
    });
    after(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('passes arguments as they are, never through a shell, and strips one final newline', async () => {
      const result = await run('printf', ['%s|%s\\n\\n', '$(touch x); *', 'two words']);
      assert.deepEqual(result, { stdout: '$(touch x); *|two words\n', stderr: '', exitCode: 0 });
    });

    it('feeds input, runs in the given directory, adds to the environment', async () => {
      assert.equal((await run('cat', [], { input: 'from stdin\n' })).stdout, 'from stdin');
      assert.equal((await run('pwd', [], { cwd: dir })).stdout, dir);
      const environment = (await run('env', [], { env: { TIDELINE_RUNNER_TEST: 'yes' } })).stdout;
      assert.match(environment, /^TIDELINE_RUNNER_TEST=yes$/m);
      assert.match(environment, /^PATH=/m, 'the rest of the environment stays');
    });

    it('fails on an exit code the caller did not accept, with what the command said', async () => {
      await assert.rejects(run('sh', ['-c', 'echo "no such volume" >&2; exit 5']), (error: unknown) => {
        assert.ok(error instanceof CommandFailedError);
        assert.equal(error.code, 'command-failed');
        assert.match(error.message, /^sh -c .* failed: exit code 5: no such volume$/);
        return true;
      });
      assert.deepEqual(await run('sh', ['-c', 'echo answer; exit 5'], { acceptExitCodes: [5] }), { stdout: 'answer', stderr: '', exitCode: 5 });
    });

    it('names a command that does not exist', async () => {
      await assert.rejects(run('tideline-no-such-command', ['x']), (error: unknown) => error instanceof CommandFailedError && /tideline-no-such-command x failed/.test(error.message));
    });

    it('kills a command that outlives its timeout and says so', async () => {
      const pidFile = path.join(dir, 'sleeper.pid');
      const started = Date.now();
      await assert.rejects(run('sh', ['-c', `echo $$ > ${pidFile}; exec sleep 30`], { timeoutMs: 300 }), /timed out after 300 ms/);
      assert.ok(Date.now() - started < 10_000, 'the runner waited for the command instead of stopping it');
      const pid = Number(await readFile(pidFile, 'utf8'));
      assert.equal(isAlive(pid), false, `the timed-out command ${pid} is still running`);
    });
  });
}
