import { QemuAttachment } from '../src/agent/qemu-attachment.js';
import { QmpClient } from '../src/qmp/index.js';
import { defaultCacheDir, ensureBootImage } from '../src/lab/boot-image.js';
import { LabVm } from '../src/lab/lab-vm.js';
import { silentLogger } from '../src/log/logger.js';
import { systemClock } from '../src/util/clock.js';
import { execaRunner } from '../src/util/runner.js';
import { GiB, MiB } from '../src/util/sizes.js';
import { BenchCluster } from './cluster.js';
import type { MailboxExtender } from '../src/mailbox/mailbox-extender.js';
import type { MailboxPolicy } from './policies.js';

/**
 * Figure 2: a real TCG guest writing as fast as it can into a thin volume,
 * extended through the mailbox and SPM with each policy's timings. Every
 * policy gets the same chunk and the same free target (oVirt's: extend when
 * less than 80 % of a chunk is free), so only the mechanism differs.
 */
export interface GuestOutcome {
  pauses: number;
  pausedMs: number;
  verified: boolean;
  writtenMib: number;
  writeMibPerSecond: number;
}

export interface GuestRunOptions {
  /** Cap the guest's disk writes with QEMU's own throttling (block_set_io_throttle bps_wr). */
  throttleMibPerSecond?: number;
  /** tideline's adaptive mode: chunk and free target grow with the measured write rate (up to ADAPTIVE_MAX_CHUNKS chunks). */
  adaptive?: boolean;
}

export async function realGuestRun(policy: MailboxPolicy, chunkBytes: number, writeMib: number, options: GuestRunOptions = {}): Promise<GuestOutcome> {
  const cluster = await BenchCluster.start(policy, 8);
  let vm: LabVm | undefined;
  let attachment: QemuAttachment | undefined;
  try {
    const boot = await ensureBootImage({ cacheDir: defaultCacheDir(), run: execaRunner, logger: silentLogger });
    vm = await LabVm.create({ name: 'bench', workDir: cluster.dir, boot, plugin: cluster.plugin, run: execaRunner, virtualBytes: 4 * GiB, initialBytes: chunkBytes, writeMib, timeoutMs: 10 * 60_000 });
    // The guest needs seconds to boot; the limit is in place long before its first write.
    if (options.throttleMibPerSecond) await throttleWrites(vm.adminSocket, options.throttleMibPerSecond * MiB);
    attachment = benchAttachment(cluster, 'bench', vm.qmpSocket, await cluster.host(1), chunkBytes, options.adaptive ?? false);
    await attachment.start();
    const progress = await vm.finished();
    const status = attachment.status()!;
    return {
      pauses: status.pauses,
      pausedMs: status.pausedMsTotal,
      verified: vm.verified,
      writtenMib: writeMib,
      writeMibPerSecond: progress.writeSeconds ? writeMib / progress.writeSeconds : 0,
    };
  } finally {
    attachment?.stop();
    await vm?.destroy();
    await cluster.close();
  }
}

/**
 * The agent's QEMU path for a benchmark VM, with the policy's timings. Every
 * policy gets oVirt's free target (extend when less than 80 % of a chunk is
 * free), so that only the mechanism differs.
 */
/** The adaptive mode's ceiling in the benchmarks, in configured chunks (the agent's own default is 16 GiB). */
const ADAPTIVE_MAX_CHUNKS = 64;

export function benchAttachment(cluster: BenchCluster, vm: string, socketPath: string, extender: MailboxExtender, chunkBytes: number, adaptive: boolean): QemuAttachment {
  const { policy } = cluster;
  return new QemuAttachment({
    vm,
    socketPath,
    plugin: cluster.plugin,
    extender,
    policy: { chunkBytes, freeTargetBytes: Math.round((chunkBytes * 0.8) / MiB) * MiB, extentBytes: MiB, adaptive, adaptiveMaxChunkBytes: adaptive ? ADAPTIVE_MAX_CHUNKS * chunkBytes : chunkBytes },
    clock: systemClock,
    logger: silentLogger,
    pollIntervalMs: policy.drivePollMs,
    thresholdEvents: policy.detection === 'events',
  });
}

async function throttleWrites(adminSocket: string, bytesPerSecond: number): Promise<void> {
  const admin = new QmpClient(adminSocket);
  try {
    await admin.start();
    // With -device over -blockdev the BlockBackend belongs to the virtio backend child, not to the device itself.
    await admin.execute('block_set_io_throttle', { id: '/machine/peripheral/vda/virtio-backend', bps: 0, bps_rd: 0, bps_wr: Math.round(bytesPerSecond), iops: 0, iops_rd: 0, iops_wr: 0 });
  } finally {
    admin.close();
  }
}
