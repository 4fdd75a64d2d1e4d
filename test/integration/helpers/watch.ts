import { QemuAttachment } from '../../../src/agent/qemu-attachment.js';
import { DirectExtender } from '../../../src/agent/direct-extender.js';
import type { LabVm } from '../../../src/lab/lab-vm.js';
import { createLogger } from '../../../src/log/logger.js';
import type { PolicySettings } from '../../../src/monitor/policy.js';
import { systemClock } from '../../../src/util/clock.js';
import { MiB } from '../../../src/util/sizes.js';
import type { LabWorld } from './lab-world.js';

export const TEST_POLICY: PolicySettings = {
  chunkBytes: 256 * MiB,
  // As much headroom as the 256 MiB chunk allows: two QEMUs share the two cores while the suite runs in parallel.
  freeTargetBytes: 256 * MiB,
  extentBytes: MiB,
  adaptive: false,
  adaptiveMaxChunkBytes: 4096 * MiB,
};

/** The agent's QEMU path, in process: a monitor attached to the VM's QMP socket. */
export async function watch(
  world: LabWorld,
  vm: LabVm,
  options: { policy?: Partial<PolicySettings>; delayMs?: number; maxSizeBytes?: number; socketPath?: string } = {},
): Promise<QemuAttachment> {
  const attachment = new QemuAttachment({
    vm: vm.options.name,
    socketPath: options.socketPath ?? vm.qmpSocket,
    plugin: world.plugin,
    extender: new DirectExtender(world.plugin, { clock: systemClock, ...(options.delayMs ? { delayMs: options.delayMs } : {}) }),
    policy: { ...TEST_POLICY, ...options.policy },
    ...(options.maxSizeBytes ? { maxSizeBytes: options.maxSizeBytes } : {}),
    clock: systemClock,
    logger: createLogger({ level: process.env.TIDELINE_TEST_LOG ?? 'silent' }),
    pollIntervalMs: 500,
    retryDelayMs: 1_000,
  });
  await attachment.start();
  return attachment;
}

/** Polls until `condition` holds; `what` may be a function so that the failure describes the state at the timeout. */
export async function until(condition: () => boolean | Promise<boolean>, timeoutMs: number, what: string | (() => string)): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
