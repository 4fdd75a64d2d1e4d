import assert from 'node:assert/strict';
import { clusterView, type StorageSample } from '../../src/cluster/cluster-view.js';
import { parseSanlockDump } from '../../src/cluster/cluster-reader.js';
import { LeaseState, type LeaseBlock } from '../../src/lease/lease-block.js';
import { Operation, ReplyStatus, type Decoded, type Reply, type Request, type Slot } from '../../src/mailbox/format.js';
import type { Inventory } from '../../src/mailbox/inventory.js';
import { MiB } from '../../src/util/sizes.js';

const valid = <T>(value: T): Decoded<T> => ({ kind: 'valid', value });
const inventory = (hostId: number, heartbeat: number): Decoded<Inventory> => valid({ hostId, heartbeat, hashes: new Set(['a', 'b']), overflow: false, incomingViews: new Map(), writtenAtMs: 1_000 + heartbeat });
const lease = (hostId: number, heartbeat: number, state = LeaseState.Idle): LeaseBlock => ({ hostId, heartbeat, ballot: 1, state, ...(state === LeaseState.Holding ? { holdingSinceMs: 500 } : {}) });

function sample(atMs: number, options: { leases: Array<LeaseBlock | 'invalid'>; inventories: Array<Decoded<Inventory>>; requests?: Map<number, Decoded<Slot<Request>>>; replies?: Map<number, Decoded<Slot<Reply>>> }): StorageSample {
  return {
    atMs,
    leaseBlocks: new Map(options.leases.map((block, index) => [block === 'invalid' ? index + 1 : block.hostId, block])),
    inventories: new Map(options.inventories.map((decoded, index) => [decoded.kind === 'valid' ? decoded.value.hostId : index + 1, decoded])),
    requests: options.requests ?? new Map(),
    replies: options.replies ?? new Map(),
  };
}

describe('cluster view from two reads of the shared storage', () => {
  it('names the SPM and since when, tells live hosts from silent ones by what moved, and lists waiting requests, the last served and the last refused', () => {
    const requests = new Map([[2, valid<Slot<Request>>({ hostId: 2, generation: 4, messages: [
      { sequence: 7, operation: Operation.Extend, volume: 'web-vda', targetBytes: 768 * MiB, virtualBytes: 0 },
      { sequence: 8, operation: Operation.Extend, volume: 'db-vda', targetBytes: 512 * MiB, virtualBytes: 0 },
      { sequence: 9, operation: Operation.Delete, volume: 'old-vda', targetBytes: 0, virtualBytes: 0 },
    ] })]]);
    const replies = new Map([[2, valid<Slot<Reply>>({ hostId: 2, generation: 3, messages: [{ sequence: 7, status: ReplyStatus.Ok, resultBytes: 768 * MiB }, undefined, { sequence: 9, status: ReplyStatus.VolumeInUse, resultBytes: 3 }] })]]);
    const first = sample(0, { leases: [lease(1, 10, LeaseState.Holding), lease(3, 40)], inventories: [inventory(2, 5), inventory(3, 9)], requests, replies });
    const second = sample(6_000, { leases: [lease(1, 16, LeaseState.Holding), lease(3, 40)], inventories: [inventory(2, 6), inventory(3, 9)], requests, replies });
    const view = clusterView(first, second);
    assert.deepEqual(view.spm, { hostId: 1, sinceMs: 500, serving: true });
    assert.equal(view.observedMs, 6_000);
    assert.deepEqual(view.hosts.map((host) => [host.hostId, host.spmCandidate, host.agent, host.alive]), [[1, 'alive', 'never', true], [2, 'never', 'alive', true], [3, 'silent', 'silent', false]]);
    const two = view.hosts[1]!;
    assert.deepEqual(two.pending.map((request) => `${request.sequence} ${request.operation} ${request.volume}`), ['8 extend db-vda']);
    assert.deepEqual(two.lastServed, { sequence: 7, resultBytes: 768 * MiB });
    assert.deepEqual(two.lastRefused, { sequence: 9, code: 'volume-in-use' });
    assert.equal(two.activeVolumes, 2);
    assert.equal(two.inventoryWrittenAtMs, 1_006);
  });

  it("names the doorbell the SPM names in the reply slots, 'none' where it names none, and nothing for slots without its notice", () => {
    const replies = (spm?: Slot<Reply>['spm']) => new Map([[2, valid<Slot<Reply>>({ hostId: 2, generation: 1, messages: [{ sequence: 1, status: ReplyStatus.Ok, resultBytes: MiB }], ...(spm ? { spm } : {}) })]]);
    const view = (spm?: Slot<Reply>['spm']) => {
      const at = sample(0, { leases: [lease(1, 10, LeaseState.Holding)], inventories: [], replies: replies(spm) });
      return clusterView(at, { ...at, atMs: 6_000, leaseBlocks: new Map([[1, lease(1, 16, LeaseState.Holding)]]) }).spm;
    };
    assert.deepEqual(view({ hostId: 1, doorbell: { address: '192.0.2.10', port: 7979 } }), { hostId: 1, sinceMs: 500, serving: true, doorbell: { address: '192.0.2.10', port: 7979 } });
    assert.deepEqual(view({ hostId: 1 }), { hostId: 1, sinceMs: 500, serving: true, doorbell: 'none' });
    assert.deepEqual(view({ hostId: 3, doorbell: { address: '192.0.2.30', port: 7979 } }), { hostId: 1, sinceMs: 500, serving: true }, "another host's notice (an earlier SPM) says nothing about this one");
    assert.deepEqual(view(), { hostId: 1, sinceMs: 500, serving: true });
  });

  it('an SPM that holds the lease but did not renew is shown as not serving; an unreadable block is named', () => {
    const stalled = sample(0, { leases: [lease(1, 10, LeaseState.Holding), 'invalid'], inventories: [] });
    const view = clusterView(stalled, { ...stalled, atMs: 6_000 });
    assert.deepEqual(view.spm, { hostId: 1, sinceMs: 500, serving: false });
    assert.deepEqual(view.hosts.find((host) => host.hostId === 2)?.unreadable, ['lease block']);
  });

  it('sanlock: the resource owner is the SPM, a delta lease whose timestamp moved is a live host', () => {
    const base = { requests: new Map(), replies: new Map(), inventories: new Map() };
    const view = clusterView(
      { atMs: 0, ...base, sanlock: { owner: 2, renewals: new Map([[1, 100], [2, 200]]) } },
      { atMs: 25_000, ...base, sanlock: { owner: 2, renewals: new Map([[1, 100], [2, 220]]) } },
    );
    assert.deepEqual(view.spm, { hostId: 2, sinceMs: null, serving: true });
    assert.deepEqual(view.hosts.map((host) => [host.hostId, host.spmCandidate]), [[1, 'silent'], [2, 'alive']]);
  });

  it("reads sanlock's direct dump: rows with offset, lockspace, resource, timestamp, owner, generation", () => {
    const text = [
      '  offset                            lockspace                                         resource  timestamp  own  gen lver',
      '00000000                                   tl                         a1b2c3d4-host-one.lan 0000004711 0001 0002',
      '00000200                                   tl                         e5f6a7b8-host-two.lan 0000000000 0002 0001',
      '00000000                                   tl                                     tideline-spm 0000004700 0001 0002 5',
      'garbage line',
    ].join('\n');
    assert.deepEqual(parseSanlockDump(text), [
      { resource: 'a1b2c3d4-host-one.lan', timestamp: 4711, owner: 1, generation: 2 },
      { resource: 'e5f6a7b8-host-two.lan', timestamp: 0, owner: 2, generation: 1 },
      { resource: 'tideline-spm', timestamp: 4700, owner: 1, generation: 2 },
    ]);
  });
});
