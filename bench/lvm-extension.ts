import { LvmWorld } from '../src/lab/lvm-world.js';
import { silentLogger } from '../src/log/logger.js';
import { GiB, MiB } from '../src/util/sizes.js';
import { extensionRoundTrips } from './extension-roundtrip.js';
import type { MailboxPolicy } from './policies.js';
import type { Summary } from './stats.js';

/**
 * Figure 8: the extension round trip of figure 1 on real LVM with
 * device-mapper. Two storage host guests share one LUN: the SPM's `lvextend`
 * runs on host A, the host's `lvchange --refresh` of an active LV on host B,
 * each a real LVM command in its guest; mailbox and lease are files on this
 * machine as in figure 1. Every policy runs on the same world, one after the
 * other. The guests are TCG, so LVM's own time is several times a real
 * hypervisor's: the figure compares policies, not this machine with a SAN.
 */
export async function lvmExtensionRoundTrips(runs: Array<{ policy: MailboxPolicy; count: number }>): Promise<Map<string, Summary>> {
  const world = await LvmWorld.start({ prefix: 'tideline-bench-lvm-', hosts: ['a', 'b'], lunBytes: 64 * GiB, vg: 'tideline_bench', extentBytes: 4 * MiB, logger: silentLogger, timeoutMs: 60 * 60_000 });
  const results = new Map<string, Summary>();
  try {
    await world.createDomain('a');
    const storage = { spm: await world.plugin('a', 'spm'), host: await world.plugin('b', 'host') };
    for (const { policy, count } of runs) {
      results.set(policy.name, await extensionRoundTrips(policy, count, 'threshold', { storage: { ...storage, volume: `bench-${policy.name}` } }));
    }
  } finally {
    await world.dispose();
  }
  return results;
}
