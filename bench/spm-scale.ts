import { Operation, MESSAGES_PER_SLOT, type Request } from '../src/mailbox/format.js';
import { Mailbox } from '../src/mailbox/mailbox.js';
import { MiB } from '../src/util/sizes.js';
import { BenchCluster } from './cluster.js';
import { timingForExpiry } from '../src/lease/open-storage-lease.js';
import { collectGarbageNow, measureInOwnProcess, printResult, runningAsOwnProcess } from './own-process.js';
import { POLICIES, type MailboxPolicy } from './policies.js';

/**
 * Figure 6: the SPM's throughput with `hosts` simulated hosts that each put
 * `perHost` extension requests into their slot at once (written straight into
 * the mailbox, so that only the SPM's work is measured), and its CPU while idle
 * afterwards: right after the traffic (once its fast polling is over), then
 * once it backed off (the bench SPM backs off after SPM_SCALE_BACK_OFF_MS
 * instead of a minute, long enough for a 20 s sample before it, after the
 * settling below).
 */
export interface SpmScaleOutcome {
  requestsPerSecond: number;
  idleCpuPercent: number;
  backedOffCpuPercent: number;
  /** What the quiet SPM reads from the storage, KiB per second, once backed off (tideline: the wake-up block and the slow full scans). */
  backedOffReadKibPerSecond: number;
}

async function cpuPercentOver(seconds: number): Promise<number> {
  const start = process.cpuUsage();
  const started = performance.now();
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  const usage = process.cpuUsage(start);
  return ((usage.user + usage.system) / 1000 / (performance.now() - started)) * 100;
}

/**
 * The steady idle CPU over `seconds`: the median of 2 s windows. Some time
 * after activity stops, V8 runs a few full collections once (its memory
 * reducer): about 100 ms of CPU in one window, which a single 10 s sample
 * catches or misses by chance, for any subject.
 */
export async function steadyCpuPercentOver(seconds: number): Promise<number> {
  const windows: number[] = [];
  for (let window = 0; window < Math.max(1, Math.round(seconds / IDLE_WINDOW_S)); window += 1) windows.push(await cpuPercentOver(IDLE_WINDOW_S));
  windows.sort((left, right) => left - right);
  return windows[Math.floor(windows.length / 2)]!;
}

const IDLE_WINDOW_S = 2;

/** The SPM polls fast for a while after its last request; past this its fast polling is over. */
const FAST_WINDOW_MS = 2_500;
/**
 * And then this long before the first window: for several seconds after a
 * burst a fresh process keeps compiling and sweeping on V8's background
 * threads (measured here: the same quiet SPM at 1.0 % in the first 20 s
 * after its traffic and 0.44 % later), the same for every policy and no part
 * of what an idle SPM costs.
 */
const SETTLE_AFTER_TRAFFIC_MS = 6_000;
/** Doubling from the idle interval reaches a 1 s maximum within this. */
const BACK_OFF_RAMP_MS = 2_000;
const SPM_SCALE_BACK_OFF_MS = 30_000;

/**
 * Figure 6 for one policy, in a node process of its own (bench/own-process.ts),
 * with the lease renewing as the product's does (once a second for a 15 s
 * expiry; the bench's quick lease renews ten times as often and would be most
 * of what is measured).
 */
export async function spmScale(policy: MailboxPolicy, hosts: number, perHost: number, idleSeconds: number, quick = false): Promise<SpmScaleOutcome> {
  return measureInOwnProcess<SpmScaleOutcome>(import.meta.url, [policy.name, String(hosts), String(perHost), String(idleSeconds), quick ? 'quick' : 'full'], 300 + 4 * idleSeconds);
}

const PRODUCT_LEASE_TIMING = timingForExpiry(15_000);

/** The full run's waits; the quick run (the tests', whose numbers are not judged) keeps only what makes each phase happen. */
function pacing(quick: boolean) {
  return quick ? { settleMs: 0, backOffMs: 8_000, lease: {} } : { settleMs: SETTLE_AFTER_TRAFFIC_MS, backOffMs: SPM_SCALE_BACK_OFF_MS, lease: { leaseTiming: PRODUCT_LEASE_TIMING } };
}

async function measureHere(policy: MailboxPolicy, hosts: number, perHost: number, idleSeconds: number, quick: boolean): Promise<SpmScaleOutcome> {
  const { settleMs, backOffMs, lease } = pacing(quick);
  const cluster = await BenchCluster.start(policy, hosts + 1, { backOffAfterQuietMs: backOffMs, ...lease });
  const writer = await Mailbox.open(cluster.mailboxPath);
  try {
    const count = Math.min(perHost, MESSAGES_PER_SLOT);
    for (let hostId = 1; hostId <= hosts; hostId += 1) {
      for (let index = 0; index < count; index += 1) await cluster.plugin.create(`h${hostId}v${index}`, MiB);
    }
    // Throughput counts from the first request served: how long a quiet SPM takes to look again is the round-trip figures' business.
    let burstStarted: number | undefined;
    cluster.spm.once('served', () => (burstStarted = performance.now()));
    for (let hostId = 1; hostId <= hosts; hostId += 1) {
      const messages: Array<Request | undefined> = Array.from({ length: count }, (_, index) => ({ sequence: index + 1, operation: Operation.Extend, volume: `h${hostId}v${index}`, targetBytes: 2 * MiB, virtualBytes: 0 }));
      await writer.writeRequests({ hostId, generation: 1, messages });
    }
    // One wake-up once every request is in: a wake-up per host would start the SPM while this one writer still writes
    // the other slots (two synchronous direct writes each), and the figure would time that writer, not the SPM.
    await writer.writeWakeUp(hosts);
    cluster.ringerFor(hosts)?.ring();
    const total = hosts * count;
    while (cluster.spm.counters.served + cluster.spm.counters.refused < total) await new Promise((resolve) => setTimeout(resolve, 5));
    const trafficEnded = performance.now();
    const requestsPerSecond = total / ((trafficEnded - burstStarted!) / 1000);

    // Right after the traffic: polling at the idle interval (or reading the wake-up block), its garbage collected.
    await new Promise((resolve) => setTimeout(resolve, FAST_WINDOW_MS + settleMs));
    collectGarbageNow();
    const idleCpuPercent = await steadyCpuPercentOver(Math.min(idleSeconds, (backOffMs - settleMs) / 1000 - 1));
    const backedOffAt = trafficEnded + FAST_WINDOW_MS + backOffMs + BACK_OFF_RAMP_MS;
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, backedOffAt - performance.now())));
    collectGarbageNow();
    const readBefore = cluster.spmBytesRead;
    const readFrom = performance.now();
    const backedOffCpuPercent = await steadyCpuPercentOver(idleSeconds);
    const backedOffReadKibPerSecond = (cluster.spmBytesRead - readBefore) / 1024 / ((performance.now() - readFrom) / 1000);
    return { requestsPerSecond, idleCpuPercent, backedOffCpuPercent, backedOffReadKibPerSecond };
  } finally {
    await writer.close();
    await cluster.close();
  }
}

if (runningAsOwnProcess(import.meta.url)) {
  const [name, hosts, perHost, idleSeconds, mode] = process.argv.slice(2);
  const policy = POLICIES.find((candidate) => candidate.name === name);
  if (!policy) throw new Error(`no mailbox policy named '${name}'`);
  printResult(await measureHere(policy, Number(hosts), Number(perHost), Number(idleSeconds), mode === 'quick'));
  process.exit(0);
}
