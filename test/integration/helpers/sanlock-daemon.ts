import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import type { Workspace } from '../../../src/lab/workspace.js';
import { execaRunner } from '../../../src/util/runner.js';
import { until } from './watch.js';

/**
 * A sanlock daemon for the tests: the one already running, or one started
 * here (no watchdog, the test-only memlock shim preloaded) and stopped by its
 * PID afterwards.
 */
export interface SanlockDaemon {
  ours: boolean;
  stop(): Promise<void>;
}

async function answers(): Promise<boolean> {
  return (await execa('sanlock', ['client', 'status'], { reject: false, timeout: 5_000 })).exitCode === 0;
}

export async function ensureSanlockDaemon(workspace: Workspace): Promise<SanlockDaemon> {
  const workDir = workspace.dir;
  if (await answers()) return { ours: false, stop: async () => undefined };
  const shim = path.join(workDir, 'memlock-shim.so');
  await execaRunner('gcc', ['-shared', '-fPIC', '-O2', '-o', shim, path.resolve('test/fixtures/memlock-shim.c')], { timeoutMs: 60_000 });
  const daemon: ResultPromise = execa('sanlock', ['daemon', '-D', '-w', '0', '-U', 'root', '-G', 'root', '-l', '0'], {
    env: { LD_PRELOAD: shim },
    reject: false,
    stdin: 'ignore',
    stdout: 'ignore',
    stderr: 'ignore',
  });
  await workspace.recordPid('sanlock-daemon', daemon.pid);
  await until(answers, 20_000, 'the sanlock daemon to answer');
  return {
    ours: true,
    stop: async () => {
      daemon.kill('SIGTERM');
      const ended = await Promise.race([daemon.then(() => true), new Promise((resolve) => setTimeout(() => resolve(false), 10_000))]);
      if (!ended) daemon.kill('SIGKILL');
      await daemon;
    },
  };
}

/** PIDs of the processes sanlock has registered (the lease holders). */
export async function sanlockClients(): Promise<number[]> {
  const { stdout } = await execaRunner('sanlock', ['client', 'status'], { timeoutMs: 5_000 });
  return stdout
    .split('\n')
    .map((line) => /^p (\d+)/.exec(line)?.[1])
    .filter((pid): pid is string => pid !== undefined)
    .map(Number);
}
