import { once } from 'node:events';
import { silentLogger } from '../src/log/logger.js';
import type { RunState, VmControl } from '../src/monitor/ports.js';
import { VmMonitor } from '../src/monitor/vm-monitor.js';
import { systemClock } from '../src/util/clock.js';
import { MiB, TiB } from '../src/util/sizes.js';
import type { StoragePlugin } from '../plugins/types.js';
import { BenchCluster } from './cluster.js';
import type { MailboxPolicy } from './policies.js';
import { summarize, type Summary } from './stats.js';

/**
 * A whole extension as the host lives it: the drive crosses its threshold (or,
 * forced, a write finds no space and the VM pauses), the monitor asks the SPM
 * through the mailbox, the SPM extends a real volume file, the host refreshes
 * and re-arms (or resumes). The VM is simulated: it only reports what a real
 * QEMU would, so the figure measures tideline's mechanism, not TCG's speed.
 */
class SimulatedVm implements VmControl {
  highWater = 0;
  threshold: number | undefined;
  state: RunState = 'running';
  noSpace = new Set<string>();
  readonly resumed: Array<() => void> = [];

  async setWriteThreshold(_drive: string, offsetBytes: number): Promise<void> {
    this.threshold = offsetBytes;
  }

  async highWaterMarks(): Promise<Map<string, number>> {
    return new Map([['vda', this.highWater]]);
  }

  async runState(): Promise<RunState> {
    return this.state;
  }

  async noSpaceDrives(): Promise<Set<string>> {
    return new Set(this.noSpace);
  }

  async resume(): Promise<void> {
    this.state = 'running';
    this.noSpace.clear();
    for (const resolve of this.resumed.splice(0)) resolve();
  }

  /** The figure measures a VM that stays on its host. */
  async migratingOut(): Promise<boolean> {
    return false;
  }

  async cancelMigration(): Promise<void> {}
}

const CHUNK = 64 * MiB;

/**
 * `storage`: real LVM instead of the cluster's volume files: the SPM extends
 * with its plugin, the host refreshes an active LV with its own (the volume is
 * created and activated on that host first, removed at the end).
 */
export async function extensionRoundTrips(policy: MailboxPolicy, count: number, mode: 'threshold' | 'enospc', options: { storage?: { spm: StoragePlugin; host: StoragePlugin; volume: string } } = {}): Promise<Summary> {
  const { storage } = options;
  const cluster = await BenchCluster.start(policy, 8, storage ? { storage } : {});
  const vm = new SimulatedVm();
  const volume = storage?.volume ?? 'bench-vda';
  let monitor: VmMonitor | undefined;
  try {
    await cluster.plugin.create(volume, CHUNK);
    if (storage) await storage.host.activate(volume);
    const extender = await cluster.host(1);
    monitor = new VmMonitor({
      vm: 'bench',
      drives: [{ config: { drive: 'vda', volume, capBytes: TiB, policy: { chunkBytes: CHUNK, freeTargetBytes: CHUNK / 2, extentBytes: MiB, adaptive: false, adaptiveMaxChunkBytes: CHUNK } }, volumeBytes: CHUNK }],
      clock: systemClock,
      extender,
      control: vm,
      logger: silentLogger,
      pollIntervalMs: policy.drivePollMs,
    });
    await monitor.start();
    const samples: number[] = [];
    for (let round = 0; round < count; round += 1) {
      const volumeBytes = monitor.status().drives[0]!.volumeBytes;
      // Let the monitor settle (threshold armed for the current size) before the next write.
      while (vm.threshold === undefined || vm.threshold < volumeBytes - CHUNK) await new Promise((resolve) => setTimeout(resolve, 1));
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 10));
      const started = performance.now();
      if (mode === 'threshold') {
        vm.highWater = vm.threshold + 4096;
        const extended = once(monitor, 'extended');
        if (policy.detection === 'events') monitor.handle({ type: 'threshold', drive: 'vda', highWaterAtLeast: vm.highWater });
        await extended;
      } else {
        vm.highWater = volumeBytes;
        vm.state = 'io-error';
        vm.noSpace.add('vda');
        const resumed = new Promise<void>((resolve) => vm.resumed.push(resolve));
        monitor.handle({ type: 'io-error', drive: 'vda', noSpace: true, action: 'stop' });
        monitor.handle({ type: 'stopped' });
        await resumed;
      }
      samples.push(performance.now() - started);
    }
    return summarize(samples);
  } finally {
    monitor?.stop();
    if (storage) {
      await storage.host.deactivate(volume).catch(() => undefined);
      await storage.spm.remove(volume).catch(() => undefined);
    }
    await cluster.close();
  }
}
