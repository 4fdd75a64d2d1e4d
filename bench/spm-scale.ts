import { Operation, MESSAGES_PER_SLOT, type Request } from '../src/mailbox/format.js';
import { Mailbox } from '../src/mailbox/mailbox.js';
import { MiB } from '../src/util/sizes.js';
import { BenchCluster } from './cluster.js';
import type { MailboxPolicy } from './policies.js';

/**
 * Figure 6: the SPM's throughput with `hosts` simulated hosts that each put
 * `perHost` extension requests into their slot at once (written straight into
 * the mailbox, so that only the SPM's work is measured), and its CPU while idle.
 */
export interface SpmScaleOutcome {
  requestsPerSecond: number;
  idleCpuPercent: number;
}

export async function spmScale(policy: MailboxPolicy, hosts: number, perHost: number, idleSeconds: number): Promise<SpmScaleOutcome> {
  const cluster = await BenchCluster.start(policy, hosts + 1);
  const writer = await Mailbox.open(cluster.mailboxPath);
  try {
    // Idle first: nothing in the mailbox, the SPM only polls.
    const idleStart = process.cpuUsage();
    const idleStarted = performance.now();
    await new Promise((resolve) => setTimeout(resolve, idleSeconds * 1000));
    const idleUsage = process.cpuUsage(idleStart);
    const idleCpuPercent = ((idleUsage.user + idleUsage.system) / 1000 / (performance.now() - idleStarted)) * 100;

    const count = Math.min(perHost, MESSAGES_PER_SLOT);
    for (let hostId = 1; hostId <= hosts; hostId += 1) {
      for (let index = 0; index < count; index += 1) await cluster.plugin.create(`h${hostId}v${index}`, MiB);
    }
    const started = performance.now();
    for (let hostId = 1; hostId <= hosts; hostId += 1) {
      const messages: Array<Request | undefined> = Array.from({ length: count }, (_, index) => ({ sequence: index + 1, operation: Operation.Extend, volume: `h${hostId}v${index}`, targetBytes: 2 * MiB, virtualBytes: 0 }));
      await writer.writeRequests({ hostId, generation: 1, messages });
    }
    const total = hosts * count;
    while (cluster.spm.counters.served + cluster.spm.counters.refused < total) await new Promise((resolve) => setTimeout(resolve, 5));
    const seconds = (performance.now() - started) / 1000;
    return { requestsPerSecond: total / seconds, idleCpuPercent };
  } finally {
    await writer.close();
    await cluster.close();
  }
}
