import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { isAlive } from '../../../src/util/process-alive.js';
import { execaRunner } from '../../../src/util/runner.js';
import { until } from './watch.js';

/**
 * The machine's one sanlock daemon, shared by every test file that needs it.
 *
 * One sanlock daemon serves the whole machine, and the suite runs two files at
 * a time: a file that started the daemon and stopped it when done took it
 * away from the other. So the files register as users under a lock (a
 * directory made with mkdir, which exactly one process wins); the first user
 * starts the daemon if none answers, and the last one to leave stops it, by
 * the PID recorded when the tests started it. A daemon the tests did not
 * start (the host's own) is used and never stopped. A crashed run's
 * registration is dropped when its process is gone.
 */
export interface SanlockDaemon {
  /** Leaves; the last user stops the daemon if the tests started it. */
  stop(): Promise<void>;
}

const SHARED_DIR = '/var/tmp/tideline-test-sanlock';
const LOCK_DIR = `${SHARED_DIR}.lock`;
const USERS_DIR = path.join(SHARED_DIR, 'users');
const DAEMON_PID_FILE = path.join(SHARED_DIR, 'daemon.pid');
/** A lock older than this belongs to a process that died between taking it and writing its owner. */
const STALE_LOCK_MS = 60_000;

async function answers(): Promise<boolean> {
  return (await execa('sanlock', ['client', 'status'], { reject: false, timeout: 5_000 })).exitCode === 0;
}

async function underLock<T>(work: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      await mkdir(LOCK_DIR);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const owner = Number(await readFile(path.join(LOCK_DIR, 'owner'), 'utf8').catch(() => '0'));
      const age = Date.now() - ((await stat(LOCK_DIR).catch(() => undefined))?.mtimeMs ?? Date.now());
      if ((owner > 0 && !isAlive(owner)) || (owner === 0 && age > STALE_LOCK_MS)) await rm(LOCK_DIR, { recursive: true, force: true });
      else if (Date.now() > deadline) throw new Error(`the sanlock test lock ${LOCK_DIR} stayed taken by PID ${owner} for 2 minutes`);
      else await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  try {
    await writeFile(path.join(LOCK_DIR, 'owner'), String(process.pid));
    return await work();
  } finally {
    await rm(LOCK_DIR, { recursive: true, force: true });
  }
}

/** The PIDs registered as users, after dropping those whose process is gone. */
async function liveUsers(): Promise<number[]> {
  const users: number[] = [];
  for (const name of await readdir(USERS_DIR).catch(() => [] as string[])) {
    const pid = Number(name);
    if (pid > 0 && isAlive(pid)) users.push(pid);
    else await rm(path.join(USERS_DIR, name), { force: true });
  }
  return users;
}

async function startDaemon(): Promise<void> {
  const shim = path.join(SHARED_DIR, 'memlock-shim.so');
  await execaRunner('gcc', ['-shared', '-fPIC', '-O2', '-o', shim, path.resolve('test/fixtures/memlock-shim.c')], { timeoutMs: 60_000 });
  // Detached: it outlives this process when another test file still uses it, and the last user stops it by this PID.
  const daemon = execa('sanlock', ['daemon', '-D', '-w', '0', '-U', 'root', '-G', 'root', '-l', '0'], {
    env: { LD_PRELOAD: shim },
    detached: true,
    reject: false,
    stdin: 'ignore',
    stdout: 'ignore',
    stderr: 'ignore',
  });
  daemon.unref();
  await writeFile(DAEMON_PID_FILE, String(daemon.pid));
  await until(answers, 20_000, 'the sanlock daemon to answer');
}

async function stopDaemon(): Promise<void> {
  const pid = Number(await readFile(DAEMON_PID_FILE, 'utf8').catch(() => '0'));
  await rm(DAEMON_PID_FILE, { force: true });
  if (!(pid > 0) || !isAlive(pid)) return;
  const commandLine = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  if (!commandLine.startsWith('sanlock\0daemon')) return;
  process.kill(pid, 'SIGTERM');
  const gone = await until(() => !isAlive(pid), 10_000, 'the sanlock daemon to stop').then(() => true, () => false);
  if (!gone) process.kill(pid, 'SIGKILL');
}

export async function ensureSanlockDaemon(): Promise<SanlockDaemon> {
  const me = path.join(USERS_DIR, String(process.pid));
  await underLock(async () => {
    await mkdir(USERS_DIR, { recursive: true });
    await writeFile(me, '');
    if (!(await answers())) await startDaemon();
  });
  return {
    stop: () =>
      underLock(async () => {
        await rm(me, { force: true });
        if ((await liveUsers()).length > 0) return;
        await stopDaemon();
        await rm(SHARED_DIR, { recursive: true, force: true });
      }),
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

/** The sanlock lease holders whose command line names `directory` (this test's processes). */
export async function sanlockHoldersUnder(directory: string): Promise<number[]> {
  const ours: number[] = [];
  for (const pid of await sanlockClients()) {
    const commandLine = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (commandLine.includes(directory)) ours.push(pid);
  }
  return ours;
}
