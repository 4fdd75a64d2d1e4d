import { decodeLeaseBlock, type LeaseBlock } from '../lease/lease-block.js';
import type { SanlockPlacement } from '../lease/sanlock.js';
import { SPM_RESOURCE } from '../lease/sanlock.js';
import { DirectBlockFile } from '../mailbox/direct-io.js';
import { BLOCK_BYTES, type Decoded } from '../mailbox/format.js';
import type { Inventory } from '../mailbox/inventory.js';
import { Mailbox } from '../mailbox/mailbox.js';
import type { Runner } from '../util/runner.js';
import { clusterView, type ClusterView, type StorageSample } from './cluster-view.js';

const SANLOCK_DUMP_TIMEOUT_MS = 10_000;

/** Where the SPM lease lives: the built-in lease volume, or sanlock's lockspace and resource volumes. */
export type LeaseSource = { kind: 'storage'; path: string } | { kind: 'sanlock'; placement: Omit<SanlockPlacement, 'hostId'>; run: Runner };

/**
 * `sanlock direct dump` rows: offset, lockspace, resource, timestamp, owner
 * host id, generation (and lver for a resource). Reads the volume itself; no
 * daemon needed. Rows whose owner is 0 are free.
 */
export function parseSanlockDump(text: string): Array<{ resource: string; timestamp: number; owner: number; generation: number }> {
  const rows: Array<{ resource: string; timestamp: number; owner: number; generation: number }> = [];
  for (const line of text.split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 6 || !/^[0-9a-f]{8}$/i.test(fields[0]!)) continue;
    const [timestamp, owner, generation] = fields.slice(3, 6).map(Number);
    if (![timestamp, owner, generation].every(Number.isSafeInteger)) continue;
    rows.push({ resource: fields[2]!, timestamp: timestamp!, owner: owner!, generation: generation! });
  }
  return rows;
}

/** Where the lease is, from the settings the SPM uses (the sanlock backend needs `ids`). */
export function leaseSource(settings: { lease: string; backend: 'storage' | 'sanlock'; ids?: string; lockspace?: string }, run: Runner): LeaseSource {
  if (settings.backend === 'storage' || settings.ids === undefined) return { kind: 'storage', path: settings.lease };
  return { kind: 'sanlock', placement: { lockspace: settings.lockspace ?? 'tideline', idsPath: settings.ids, leasesPath: settings.lease }, run };
}

/** Two reads of the shared storage `observeSeconds` apart. */
export async function observeCluster(mailboxPath: string, lease: LeaseSource | undefined, observeSeconds: number, progress: (message: string) => void = () => undefined): Promise<ClusterView> {
  const mailbox = await Mailbox.open(mailboxPath);
  const reader = new ClusterReader(mailbox, lease);
  try {
    const first = await reader.sample();
    progress(`watching the shared storage for ${observeSeconds} s: a host is alive when its lease or inventory moves meanwhile...`);
    await new Promise((resolve) => setTimeout(resolve, observeSeconds * 1000));
    return clusterView(first, await reader.sample());
  } finally {
    await reader.close();
    await mailbox.close();
  }
}

export class ClusterReader {
  private leaseFile: DirectBlockFile | undefined;

  constructor(
    private readonly mailbox: Mailbox,
    private readonly lease: LeaseSource | undefined,
  ) {}

  async sample(): Promise<StorageSample> {
    const { mailbox } = this;
    const [requests, replies, inventories] = await Promise.all([
      mailbox.readAllRequests(),
      mailbox.readAllReplies(),
      // A mailbox from before inventories has none; everything else still reads.
      mailbox.readInventories().catch(() => new Map<number, Decoded<Inventory>>()),
    ]);
    const sample: StorageSample = { atMs: Date.now(), requests, replies, inventories };
    if (this.lease?.kind === 'storage') sample.leaseBlocks = await this.readLeaseBlocks(this.lease.path);
    if (this.lease?.kind === 'sanlock') sample.sanlock = await this.readSanlock(this.lease);
    return sample;
  }

  async close(): Promise<void> {
    await this.leaseFile?.close();
  }

  private async readLeaseBlocks(path: string): Promise<Map<number, LeaseBlock | 'invalid' | undefined>> {
    const maxHosts = this.mailbox.maxHosts;
    this.leaseFile ??= await DirectBlockFile.open(path, maxHosts * BLOCK_BYTES);
    const region = await this.leaseFile.read(0, maxHosts * BLOCK_BYTES);
    const blocks = new Map<number, LeaseBlock | 'invalid' | undefined>();
    for (let hostId = 1; hostId <= maxHosts; hostId += 1) blocks.set(hostId, decodeLeaseBlock(region.subarray((hostId - 1) * BLOCK_BYTES, hostId * BLOCK_BYTES), hostId));
    return blocks;
  }

  private async readSanlock(source: Extract<LeaseSource, { kind: 'sanlock' }>): Promise<NonNullable<StorageSample['sanlock']>> {
    const dump = async (path: string) => parseSanlockDump((await source.run('sanlock', ['direct', 'dump', path], { timeoutMs: SANLOCK_DUMP_TIMEOUT_MS })).stdout);
    const [ids, resource] = await Promise.all([dump(source.placement.idsPath), dump(source.placement.leasesPath)]);
    const renewals = new Map<number, number>();
    // A delta lease row: its owner is the host id, its timestamp advances at every renewal.
    for (const row of ids) if (row.owner > 0 && row.timestamp > 0) renewals.set(row.owner, row.timestamp);
    const held = resource.find((row) => row.resource === SPM_RESOURCE && row.owner > 0 && row.timestamp > 0);
    return { owner: held?.owner, renewals };
  }
}
