import { MiB } from '../src/util/sizes.js';
import { BenchCluster, SHORT_BACK_OFF_AFTER_QUIET_MS } from './cluster.js';
import type { MailboxPolicy } from './policies.js';
import { summarize, type Summary } from './stats.js';

/**
 * Request -> reply round trip through the mailbox: `hosts` simulated hosts,
 * each extending its own volume `requestsPerHost` times in a row, all hosts at
 * once. `sharedReplyReads`: the hosts read their replies through one reader
 * (bench/cluster.ts, SharedReplyReader), as if each were its own machine.
 */
export async function mailboxRoundTrip(policy: MailboxPolicy, hosts: number, requestsPerHost: number, options: { sharedReplyReads?: boolean } = {}): Promise<Summary> {
  const cluster = await BenchCluster.start(policy, Math.max(hosts + 1, 8));
  try {
    const samples: number[] = [];
    // Every host is set up before any asks: creating volumes changes the domain's directory, which the SPM's loop
    // domain reads again after (plugins/loop), and that is setup, not the round trip.
    const extenders = await Promise.all(
      Array.from({ length: hosts }, async (_, index) => {
        const hostId = index + 1;
        await cluster.plugin.create(`bench${hostId}-vda`, 8 * MiB);
        return cluster.host(hostId, options);
      }),
    );
    await Promise.all(
      extenders.map(async (extender, index) => {
        const volume = `bench${index + 1}-vda`;
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

/**
 * A request to a quiet SPM: before each one the cluster is left alone past
 * the SPM's back-off (the bench SPM backs off after SHORT_BACK_OFF_AFTER_QUIET_MS
 * instead of a minute), as in a real cluster where a host asks for space every
 * few gigabytes written, often minutes apart. One host, one volume.
 */
export async function coldRequestRoundTrip(policy: MailboxPolicy, samples: number): Promise<Summary> {
  const quietMs = SHORT_BACK_OFF_AFTER_QUIET_MS + 1_000;
  const cluster = await BenchCluster.start(policy, 8, { backOffAfterQuietMs: SHORT_BACK_OFF_AFTER_QUIET_MS });
  try {
    const volume = 'cold1-vda';
    await cluster.plugin.create(volume, 8 * MiB);
    const extender = await cluster.host(1);
    const times: number[] = [];
    for (let request = 1; request <= samples; request += 1) {
      await new Promise((resolve) => setTimeout(resolve, quietMs + Math.random() * 100));
      const started = performance.now();
      await extender.extend(volume, (8 + request) * MiB);
      times.push(performance.now() - started);
    }
    return summarize(times);
  } finally {
    await cluster.close();
  }
}
