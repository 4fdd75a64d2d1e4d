import assert from 'node:assert/strict';
import { DEFAULT_POLICY, ExtensionPolicy, OVIRT_CHUNK_BYTES, OVIRT_FREE_TARGET_BYTES, type PolicySettings } from '../../src/monitor/policy.js';
import { GiB, MiB } from '../../src/util/sizes.js';

const FIXED: PolicySettings = { chunkBytes: 256 * MiB, freeTargetBytes: 128 * MiB, extentBytes: 128 * MiB, adaptive: false, adaptiveMaxChunkBytes: 8 * GiB };

describe('ExtensionPolicy', () => {
  it('defaults to oVirt: 2.5 GiB chunks, extend when less than 2 GiB is free', () => {
    assert.equal(DEFAULT_POLICY.chunkBytes, OVIRT_CHUNK_BYTES);
    assert.equal(DEFAULT_POLICY.freeTargetBytes, OVIRT_FREE_TARGET_BYTES);
    const policy = new ExtensionPolicy(DEFAULT_POLICY);
    assert.equal(policy.threshold(5 * GiB), 3 * GiB);
    assert.equal(policy.nextSize(5 * GiB, 3 * GiB + 1, 100 * GiB), 7.5 * GiB);
  });

  it('puts the threshold free-target below the end, never below zero', () => {
    const policy = new ExtensionPolicy(FIXED);
    assert.equal(policy.threshold(1 * GiB), 1 * GiB - 128 * MiB);
    assert.equal(policy.threshold(64 * MiB), 0);
    assert.equal(policy.needsExtension(1 * GiB, 1 * GiB - 128 * MiB), false);
    assert.equal(policy.needsExtension(1 * GiB, 1 * GiB - 128 * MiB + 1), true);
  });

  it('extends a fresh volume smaller than the free target before anything is written', () => {
    const policy = new ExtensionPolicy(FIXED);
    // QEMU reads a threshold of 0 as "none": waiting for a threshold event here would end in ENOSPC.
    assert.equal(policy.needsExtension(64 * MiB, 0), true);
    assert.equal(policy.nextSize(64 * MiB, 0, 8 * GiB), 384 * MiB);
  });

  it('asks for one chunk more, in whole extents, capped, and never less than the volume', () => {
    const policy = new ExtensionPolicy(FIXED);
    assert.equal(policy.nextSize(1 * GiB, 1 * GiB - 100 * MiB, 10 * GiB), 1 * GiB + 256 * MiB);
    assert.equal(policy.nextSize(1 * GiB + 1, 1 * GiB, 10 * GiB), 1 * GiB + 384 * MiB, 'rounded up to the 128 MiB extent');
    assert.equal(policy.nextSize(1 * GiB, 1 * GiB, 1 * GiB + 100 * MiB), 1 * GiB + 100 * MiB);
    assert.equal(policy.nextSize(2 * GiB, 2 * GiB, 1 * GiB), 2 * GiB);
  });

  it('asks for enough when the image already ran far past the threshold', () => {
    const policy = new ExtensionPolicy(FIXED);
    assert.equal(policy.nextSize(1 * GiB, 3 * GiB, 10 * GiB), 3 * GiB + 128 * MiB);
  });

  it('adaptive mode grows free target and chunk when the write rate would outrun an extension', () => {
    const policy = new ExtensionPolicy({ ...FIXED, adaptive: true });
    assert.equal(policy.freeTarget(), 128 * MiB, 'nothing measured yet');
    // 1 GiB/s for two seconds, extensions taking 500 ms: 1.5 GiB of headroom with the safety factor.
    policy.observeHighWater(0, 0);
    policy.observeHighWater(1 * GiB, 1_000);
    policy.observeHighWater(2 * GiB, 2_000);
    policy.observeExtensionLatency(500);
    assert.equal(policy.freeTarget(), 1.5 * GiB);
    // Twice the free target, so that the extension does not leave the guest at the next threshold.
    assert.equal(policy.chunk(), 3 * GiB);
    assert.equal(policy.threshold(4 * GiB), 2.5 * GiB);
    assert.equal(Math.round(policy.writeRate()), 1 * GiB);
  });

  it('adaptive mode stays at the configured sizes for a slow writer and never exceeds its maximum', () => {
    const slow = new ExtensionPolicy({ ...FIXED, adaptive: true });
    slow.observeHighWater(0, 0);
    slow.observeHighWater(1 * MiB, 1_000);
    slow.observeExtensionLatency(100);
    assert.equal(slow.freeTarget(), 128 * MiB);
    assert.equal(slow.chunk(), 256 * MiB);

    const fast = new ExtensionPolicy({ ...FIXED, adaptive: true, adaptiveMaxChunkBytes: 1 * GiB });
    fast.observeHighWater(0, 0);
    fast.observeHighWater(10 * GiB, 1_000);
    fast.observeExtensionLatency(2_000);
    assert.equal(fast.freeTarget(), 1 * GiB);
    assert.equal(fast.chunk(), 1 * GiB);
  });

  it('adaptive mode sizes the free target by the slowest recent extension, and forgets it slowly', () => {
    const policy = new ExtensionPolicy({ ...FIXED, chunkBytes: 8 * MiB, freeTargetBytes: 6 * MiB, extentBytes: MiB, adaptive: true });
    policy.observeHighWater(0, 0);
    policy.observeHighWater(256 * MiB, 1_000); // 256 MiB/s
    for (const latency of [10, 10, 60, 10]) policy.observeExtensionLatency(latency);
    // 256 MiB/s x the 60 ms extension (decayed once: 54 ms) x 3, not the ~25 ms average.
    assert.equal(policy.freeTarget(), Math.ceil((256 * 0.054 * 3)) * MiB);
    // A chunk covers a second of writing at that rate.
    assert.equal(policy.chunk(), 256 * MiB);
    for (let index = 0; index < 40; index += 1) policy.observeExtensionLatency(10);
    assert.equal(policy.freeTarget(), Math.ceil(256 * 0.010 * 3) * MiB);
  });

  it('adaptive mode learns a fast writer from short samples, a slow one only over longer ones', () => {
    const policy = new ExtensionPolicy({ ...FIXED, chunkBytes: 8 * MiB, freeTargetBytes: 6 * MiB, extentBytes: MiB, adaptive: true });
    policy.observeHighWater(0, 0);
    policy.observeHighWater(1 * MiB, 10);
    policy.observeHighWater(20 * MiB, 50); // 20 MiB in 50 ms: more than a free target
    assert.equal(Math.round(policy.writeRate() / MiB), 400);
    const slow = new ExtensionPolicy({ ...FIXED, chunkBytes: 8 * MiB, freeTargetBytes: 6 * MiB, extentBytes: MiB, adaptive: true });
    slow.observeHighWater(0, 0);
    slow.observeHighWater(2 * MiB, 50);
    assert.equal(slow.writeRate(), 0, 'a short sample of a slow writer says more about scheduling');
    slow.observeHighWater(4 * MiB, 250);
    assert.equal(Math.round(slow.writeRate() / MiB), 16);
  });

  it('fixed mode ignores what it measures', () => {
    const policy = new ExtensionPolicy(FIXED);
    policy.observeHighWater(0, 0);
    policy.observeHighWater(10 * GiB, 1_000);
    policy.observeExtensionLatency(5_000);
    assert.equal(policy.freeTarget(), 128 * MiB);
    assert.equal(policy.chunk(), 256 * MiB);
  });
});
