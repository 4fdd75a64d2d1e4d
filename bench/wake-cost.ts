import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { Mailbox } from '../src/mailbox/mailbox.js';
import { InProcessWakeUpWatcher, ThreadWakeUpWatcher } from '../src/spm/wake-up-watcher.js';
import { DoorbellListener } from '../src/doorbell/doorbell.js';
import { silentLogger } from '../src/log/logger.js';
import { systemClock } from '../src/util/clock.js';
import { collectGarbageNow, measureInOwnProcess, printResult, runningAsOwnProcess } from './own-process.js';
import { steadyCpuPercentOver } from './spm-scale.js';

/**
 * Figure 6's floor: what a quiet SPM's way of noticing requests costs on its
 * own, each in a process of its own with nothing else (no lease, no SPM):
 * - a thread that only wakes every `intervalMs` and reads nothing: the least
 *   any look at that interval can cost;
 * - tideline's looks (the SPM's wake-up thread reading the 4 KiB block);
 * - tideline's looks with a doorbell (the block read on the event loop once
 *   a second, the doorbell's socket bound and idle);
 * - the vdsm-4.5 model's reads (every host's request slot every 0.5 s).
 * They show whether a look interval fast enough for the cold-request target
 * can cost less CPU than the model's scans on this machine at all.
 */
export type WakeCostMode = 'wake-only' | 'tideline-looks' | 'doorbell-looks' | 'model-scans';

const MODEL_SCAN_MS = 500;
/** A fresh process compiles and sweeps in the background for its first seconds (bench/own-process.ts). */
const SETTLE_MS = 15_000;

/** `quick`: the tests' run, whose numbers are not judged, without the settling. */
export async function wakeCostCpuPercent(mode: WakeCostMode, intervalMs: number, hosts: number, seconds: number, quick = false): Promise<number> {
  return (await measureInOwnProcess<{ cpuPercent: number }>(import.meta.url, [mode, String(intervalMs), String(hosts), String(seconds), quick ? '0' : String(SETTLE_MS)], seconds + 60)).cpuPercent;
}

async function measureHere(mode: WakeCostMode, intervalMs: number, hosts: number, seconds: number, settleMs: number): Promise<number> {
  const dir = await mkdtemp('/var/tmp/tideline-bench-wake-');
  const stop = new AbortController();
  try {
    const mailboxPath = path.join(dir, 'mailbox');
    await Mailbox.init(mailboxPath, { maxHosts: hosts });
    let running: Promise<void> = Promise.resolve();
    let close: () => Promise<unknown> = async () => undefined;
    if (mode === 'wake-only') {
      const worker = new Worker('const c = new Int32Array(new SharedArrayBuffer(4)); for (;;) Atomics.wait(c, 0, 0, require("node:worker_threads").workerData);', { eval: true, workerData: intervalMs });
      close = () => worker.terminate();
    } else if (mode === 'tideline-looks') {
      // As the quiet SPM waits: a wait that ends every second, the thread looking every intervalMs.
      const watcher = new ThreadWakeUpWatcher(mailboxPath, hosts);
      running = (async () => {
        while (!stop.signal.aborted) await watcher.waitForChange(intervalMs, 1_000);
      })();
      close = () => watcher.close();
    } else if (mode === 'doorbell-looks') {
      const mailbox = await Mailbox.open(mailboxPath);
      const watcher = new InProcessWakeUpWatcher(mailbox, systemClock);
      const doorbell = await DoorbellListener.listen({ host: '127.0.0.1', port: 0 }, { mailboxId: mailbox.header.mailboxId, maxHosts: hosts, logger: silentLogger, onRing: () => watcher.ring() });
      running = (async () => {
        while (!stop.signal.aborted) await watcher.waitForChange(intervalMs, 1_000);
      })();
      close = async () => {
        await doorbell.close();
        await mailbox.close();
      };
    } else {
      const mailbox = await Mailbox.open(mailboxPath);
      const timer = setInterval(() => void mailbox.readRequestBlocks(), MODEL_SCAN_MS);
      close = async () => {
        clearInterval(timer);
        await mailbox.close();
      };
    }
    await new Promise((resolve) => setTimeout(resolve, settleMs));
    collectGarbageNow();
    const cpuPercent = await steadyCpuPercentOver(seconds);
    stop.abort();
    // Each wait ends within a second; the mailbox is closed only after the last.
    await running.catch(() => undefined);
    await close();
    return cpuPercent;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (runningAsOwnProcess(import.meta.url)) {
  const [mode, intervalMs, hosts, seconds, settleMs] = process.argv.slice(2);
  printResult({ cpuPercent: await measureHere(mode as WakeCostMode, Number(intervalMs), Number(hosts), Number(seconds), Number(settleMs)) });
  process.exit(0);
}
