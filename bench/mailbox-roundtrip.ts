import { MiB } from '../src/util/sizes.js';
import { BenchCluster } from './cluster.js';
import type { MailboxPolicy } from './policies.js';
import { summarize, type Summary } from './stats.js';

/**
 * Request -> reply round trip through the mailbox: `hosts` simulated hosts,
 * each extending its own volume `requestsPerHost` times in a row, all hosts at
 * once.
 */
export async function mailboxRoundTrip(policy: MailboxPolicy, hosts: number, requestsPerHost: number): Promise<Summary> {
  const cluster = await BenchCluster.start(policy, Math.max(hosts + 1, 8));
  try {
    const samples: number[] = [];
    await Promise.all(
      Array.from({ length: hosts }, async (_, index) => {
        const hostId = index + 1;
        const volume = `bench${hostId}-vda`;
        await cluster.plugin.create(volume, 8 * MiB);
        const extender = await cluster.host(hostId);
        // Hosts start at random moments, as VMs would, not in lockstep with the SPM's poll.
        await new Promise((resolve) => setTimeout(resolve, Math.random() * policy.spmPollIdleMs));
        for (let request = 1; request <= requestsPerHost; request += 1) {
          const started = performance.now();
          await extender.extend(volume, (8 + request) * MiB);
          samples.push(performance.now() - started);
          await new Promise((resolve) => setTimeout(resolve, Math.random() * 20));
        }
      }),
    );
    return summarize(samples);
  } finally {
    await cluster.close();
  }
}
