import type { LeaseBlock } from '../lease/lease-block.js';
import { LeaseState } from '../lease/lease-block.js';
import type { Inventory } from '../mailbox/inventory.js';
import { Operation, REPLY_STATUS_CODES, ReplyStatus, type Decoded, type Reply, type Request, type Slot } from '../mailbox/format.js';
import type { UdpEndpoint } from '../util/address-text.js';

/**
 * What the shared storage says about the cluster, from two reads some
 * seconds apart (pure: the reading is in cluster-reader.ts). No host's clock
 * is compared with another's: a host is alive when something it writes
 * periodically changed between the two reads, as the lease itself decides.
 */
export interface StorageSample {
  /** This host's wall clock at the read. */
  atMs: number;
  /** Built-in lease blocks by host id (undefined: never written); absent with sanlock. */
  leaseBlocks?: ReadonlyMap<number, LeaseBlock | 'invalid' | undefined>;
  /** sanlock: the SPM resource's owner, and per host its delta lease's renewal counter. */
  sanlock?: { owner: number | undefined; renewals: ReadonlyMap<number, number> };
  requests: ReadonlyMap<number, Decoded<Slot<Request>>>;
  replies: ReadonlyMap<number, Decoded<Slot<Reply>>>;
  inventories: ReadonlyMap<number, Decoded<Inventory>>;
}

export type Liveness = 'alive' | 'silent' | 'never';

export interface HostView {
  hostId: number;
  /** Its SPM process (lease renewals) and its agent (inventory heartbeat), as seen during the observation. */
  spmCandidate: Liveness;
  agent: Liveness;
  alive: boolean;
  /** The agent's last inventory write, by the agent's own clock (ms since the epoch); null when unknown. */
  inventoryWrittenAtMs: number | null;
  activeVolumes: number | null;
  /** Requests in its slot that have no reply yet: waiting for the SPM or being served. */
  pending: Array<{ sequence: number; operation: string; volume: string; targetBytes: number }>;
  lastServed: { sequence: number; resultBytes: number } | null;
  lastRefused: { sequence: number; code: string } | null;
  /** A slot or block of this host that does not decode. */
  unreadable: string[];
}

export interface ClusterView {
  observedMs: number;
  spm: { hostId: number; sinceMs: number | null; serving: boolean; doorbell?: SpmDoorbell } | null;
  hosts: HostView[];
}

function liveness(before: string | undefined, after: string | undefined): Liveness {
  if (after === undefined) return 'never';
  return before !== undefined && before !== after ? 'alive' : 'silent';
}

function leaseKey(block: LeaseBlock | 'invalid' | undefined): string | undefined {
  return block === undefined || block === 'invalid' ? undefined : `${block.heartbeat}`;
}

function inventoryKey(inventory: Decoded<Inventory> | undefined): string | undefined {
  return inventory?.kind === 'valid' ? `${inventory.value.heartbeat}` : undefined;
}

function valid<T>(decoded: Decoded<T> | undefined): T | undefined {
  return decoded?.kind === 'valid' ? decoded.value : undefined;
}

function hostView(hostId: number, first: StorageSample, second: StorageSample): HostView {
  const spmCandidate = second.sanlock
    ? liveness(first.sanlock?.renewals.get(hostId)?.toString(), second.sanlock.renewals.get(hostId)?.toString())
    : liveness(leaseKey(first.leaseBlocks?.get(hostId)), leaseKey(second.leaseBlocks?.get(hostId)));
  const agent = liveness(inventoryKey(first.inventories.get(hostId)), inventoryKey(second.inventories.get(hostId)));
  const inventory = valid(second.inventories.get(hostId));
  const requests = valid(second.requests.get(hostId));
  const replies = valid(second.replies.get(hostId));
  const pending: HostView['pending'] = [];
  let lastServed: HostView['lastServed'] = null;
  let lastRefused: HostView['lastRefused'] = null;
  requests?.messages.forEach((request, index) => {
    if (!request) return;
    const reply = replies?.messages[index];
    if (reply?.sequence !== request.sequence) pending.push({ sequence: request.sequence, operation: Operation[request.operation]?.toLowerCase() ?? 'unknown', volume: request.volume, targetBytes: request.targetBytes });
  });
  for (const reply of replies?.messages ?? []) {
    if (!reply) continue;
    if (reply.status === ReplyStatus.Ok) {
      if (!lastServed || reply.sequence > lastServed.sequence) lastServed = { sequence: reply.sequence, resultBytes: reply.resultBytes };
    } else if (!lastRefused || reply.sequence > lastRefused.sequence) {
      lastRefused = { sequence: reply.sequence, code: REPLY_STATUS_CODES[reply.status] ?? `status ${reply.status}` };
    }
  }
  const unreadable = [
    ...(second.requests.get(hostId)?.kind === 'invalid' ? ['requests'] : []),
    ...(second.replies.get(hostId)?.kind === 'invalid' ? ['replies'] : []),
    ...(second.inventories.get(hostId)?.kind === 'invalid' ? ['inventory'] : []),
    ...(second.leaseBlocks?.get(hostId) === 'invalid' ? ['lease block'] : []),
  ];
  return {
    hostId,
    spmCandidate,
    agent,
    alive: spmCandidate === 'alive' || agent === 'alive',
    inventoryWrittenAtMs: inventory && inventory.writtenAtMs > 0 ? inventory.writtenAtMs : null,
    activeVolumes: inventory ? (inventory.overflow ? null : inventory.hashes.size) : null,
    pending: pending.sort((a, b) => a.sequence - b.sequence),
    lastServed,
    lastRefused,
    unreadable,
  };
}

/**
 * What the SPM named in the reply slots it wrote: the doorbell hosts ring, or
 * 'none' when it listens on none. Absent when no slot carries a notice of that
 * host (an SPM of an older tideline, or one that never wrote a reply).
 */
export type SpmDoorbell = UdpEndpoint | 'none';

function namedDoorbell(replies: StorageSample['replies'], spmHostId: number): SpmDoorbell | undefined {
  for (const decoded of replies.values()) {
    if (decoded.kind === 'valid' && decoded.value.spm?.hostId === spmHostId) return decoded.value.spm.doorbell ?? 'none';
  }
  return undefined;
}

/** Every host that ever wrote anything, in host id order; the SPM is the lease holder, serving if it renewed during the observation. */
export function clusterView(first: StorageSample, second: StorageSample): ClusterView {
  const ids = new Set<number>();
  const written = <T>(map: ReadonlyMap<number, T> | undefined, isWritten: (value: T) => boolean) => {
    for (const [hostId, value] of map ?? []) if (isWritten(value)) ids.add(hostId);
  };
  written(second.leaseBlocks, (block) => block !== undefined);
  written(second.sanlock?.renewals, (renewal) => renewal > 0);
  written(second.requests, (slot) => slot.kind !== 'empty');
  written(second.replies, (slot) => slot.kind !== 'empty');
  written(second.inventories, (inventory) => inventory.kind !== 'empty');
  const hosts = [...ids].sort((a, b) => a - b).map((hostId) => hostView(hostId, first, second));

  let spm: ClusterView['spm'] = null;
  if (second.sanlock) {
    const owner = second.sanlock.owner;
    if (owner !== undefined) spm = { hostId: owner, sinceMs: null, serving: hosts.find((host) => host.hostId === owner)?.spmCandidate === 'alive' };
  } else {
    for (const [hostId, block] of second.leaseBlocks ?? []) {
      if (block === undefined || block === 'invalid' || block.state !== LeaseState.Holding) continue;
      spm = { hostId, sinceMs: block.holdingSinceMs ?? null, serving: hosts.find((host) => host.hostId === hostId)?.spmCandidate === 'alive' };
    }
  }
  const doorbell = spm && namedDoorbell(second.replies, spm.hostId);
  if (spm && doorbell) spm.doorbell = doorbell;
  return { observedMs: second.atMs - first.atMs, spm, hosts };
}
