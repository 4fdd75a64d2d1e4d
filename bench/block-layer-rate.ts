import path from 'node:path';
import readline from 'node:readline';
import { execa } from 'execa';
import { defaultCacheDir, ensureBootImage } from '../src/lab/boot-image.js';
import { qemuArguments } from '../src/lab/qemu-process.js';
import { silentLogger } from '../src/log/logger.js';
import { QmpClient } from '../src/qmp/index.js';
import { execaRunner } from '../src/util/runner.js';
import { GiB, MiB } from '../src/util/sizes.js';
import { BenchCluster } from './cluster.js';
import { climbLadder, type CriticalRate, type RateRung } from './critical-rate.js';
import type { MailboxPolicy } from './policies.js';
import { benchAttachment } from './real-guest.js';

/**
 * Figure 3, beyond what a TCG guest can write: the same thin drive on a real
 * QEMU (its CPU never started, `-S`), written through QEMU's own block layer
 * with HMP `qemu-io` at a paced rate, 1 MiB per write. A write that finds no
 * space fails with ENOSPC instead of pausing a guest; it counts as the pause it
 * would have been and is retried until the volume grew, as a resumed guest
 * would retry it. At the end every byte is read back and checked.
 */
const WRITE_MIB = 1;
const PATTERN = '0x5a';
/** The virtio-blk device's BlockBackend hangs off its backend child (QOM path). */
const DEVICE = '/machine/peripheral/vda/virtio-backend';
const RETRY_MS = 2;

/**
 * HMP's qemu-io prints its verdict on QEMU's stdout, not in the command's
 * reply: read it from there, one command at a time. A command's output ends
 * with its statistics line (`... ops; ...`) or with a `... failed: reason` line.
 */
class QemuIoConsole {
  private readonly lines: string[] = [];
  private wake: (() => void) | undefined;

  constructor(stdout: NodeJS.ReadableStream) {
    readline.createInterface({ input: stdout }).on('line', (line) => {
      this.lines.push(line);
      this.wake?.();
    });
  }

  async run(admin: QmpClient, command: string): Promise<string[]> {
    await admin.execute('human-monitor-command', { 'command-line': `qemu-io -d ${DEVICE} "${command}"` }, 60_000);
    const output: string[] = [];
    for (;;) {
      const line = this.lines.shift();
      if (line === undefined) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        continue;
      }
      output.push(line);
      if (line.includes(' ops; ') || /failed: /.test(line)) return output;
    }
  }
}

const noSpace = (output: string[]) => output.some((line) => /No space left/i.test(line));
const failure = (output: string[]) => output.find((line) => /failed/i.test(line));

async function paced(policy: MailboxPolicy, chunkBytes: number, rateMibPerSecond: number, writeMib: number, adaptive: boolean): Promise<RateRung> {
  const cluster = await BenchCluster.start(policy, 8);
  const volume = 'io-vda';
  let qemu: ReturnType<typeof execa> | undefined;
  const admin = new QmpClient(path.join(cluster.dir, 'admin.qmp'));
  let attachment: ReturnType<typeof benchAttachment> | undefined;
  try {
    const boot = await ensureBootImage({ cacheDir: defaultCacheDir(), run: execaRunner, logger: silentLogger });
    await cluster.plugin.create(volume, chunkBytes, { vm: 'io', drive: 'vda' });
    const devicePath = await cluster.plugin.activate(volume);
    await execaRunner('qemu-img', ['create', '-q', '-f', 'qcow2', devicePath, String(16 * GiB)], { timeoutMs: 60_000 });
    const qmpSocket = path.join(cluster.dir, 'agent.qmp');
    const launch = { boot, devicePath, driveId: 'vda', qmpSocket, adminSocket: path.join(cluster.dir, 'admin.qmp'), consoleLog: '/dev/null', writeMib: 0, timeoutMs: 10 * 60_000 };
    // stdbuf: qemu-io's printf output must reach us line by line, not when a pipe buffer fills.
    qemu = execa('stdbuf', ['-oL', 'qemu-system-x86_64', ...qemuArguments(launch), '-S'], { reject: false, stdin: 'ignore', stdout: 'pipe', stderr: 'ignore', buffer: false, timeout: launch.timeoutMs });
    const qemuIo = new QemuIoConsole(qemu.stdout!);
    attachment = benchAttachment(cluster, 'io', qmpSocket, await cluster.host(1), chunkBytes, adaptive);
    await attachment.start();
    await admin.start();

    let stalls = 0;
    let stalledMs = 0;
    const started = performance.now();
    for (let index = 0; index < writeMib / WRITE_MIB; index += 1) {
      const due = started + (index * WRITE_MIB * 1000) / rateMibPerSecond;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      const write = `write -P ${PATTERN} ${index * WRITE_MIB}M ${WRITE_MIB}M`;
      let output = await qemuIo.run(admin, write);
      if (noSpace(output)) {
        stalls += 1;
        const stalledAt = performance.now();
        while (noSpace(output)) {
          await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
          output = await qemuIo.run(admin, write);
        }
        stalledMs += performance.now() - stalledAt;
      }
      if (failure(output)) throw new Error(`qemu-io ${write}: ${failure(output)}`);
    }
    const seconds = (performance.now() - started) / 1000;
    let verified = true;
    for (let index = 0; index < writeMib / WRITE_MIB; index += 1) {
      if (failure(await qemuIo.run(admin, `read -P ${PATTERN} ${index * WRITE_MIB}M ${WRITE_MIB}M`))) verified = false;
    }
    return {
      throttleMibPerSecond: rateMibPerSecond,
      outcome: { pauses: stalls, pausedMs: stalledMs, verified, writtenMib: writeMib, writeMibPerSecond: writeMib / seconds },
    };
  } finally {
    admin.close();
    attachment?.stop();
    qemu?.kill('SIGKILL');
    await qemu?.catch(() => undefined);
    await cluster.close();
  }
}

/** The rate a rung wrote at while not paused: what the writer really kept up, stalls left out. */
function runningRate(rung: RateRung): number {
  const { writeMibPerSecond, writtenMib, pausedMs } = rung.outcome;
  if (writeMibPerSecond <= 0) return 0;
  const runningSeconds = writtenMib / writeMibPerSecond - pausedMs / 1000;
  return runningSeconds > 0 ? writtenMib / runningSeconds : writeMibPerSecond;
}

/**
 * Rates from `ratesMibPerSecond`, each writing for about `secondsPerRung`, until
 * the first stall, or through all of them with `throughAllRates` (the adaptive
 * mode stalls once before it has measured anything; the rungs after show
 * whether it then keeps up).
 */
export async function blockLayerCriticalRate(
  policy: MailboxPolicy,
  chunkBytes: number,
  ratesMibPerSecond: number[],
  secondsPerRung: number,
  options: { adaptive?: boolean; throughAllRates?: boolean } = {},
): Promise<CriticalRate> {
  return climbLadder(
    ratesMibPerSecond,
    (rate) => paced(policy, chunkBytes, rate, Math.max(4 * (chunkBytes / MiB), Math.ceil(rate * secondsPerRung)), options.adaptive ?? false),
    {
      ...(options.throughAllRates ? { throughAllRates: true } : {}),
      describe: `${policy.name}, qemu-io`,
      // A pace the writer could not keep says nothing: the rate it wrote at is the figure.
      rateOf: (paused) => Math.min(paused.throttleMibPerSecond ?? Infinity, runningRate(paused)),
    },
  );
}
