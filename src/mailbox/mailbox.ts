import { randomInt, randomUUID } from 'node:crypto';
import { open, stat } from 'node:fs/promises';
import { TideError } from '../errors.js';
import { DirectBlockFile } from './direct-io.js';
import { decodeInventory, encodeInventory, type Inventory } from './inventory.js';
import {
  BLOCK_BYTES,
  decodeHeader,
  decodeReplySlot,
  decodeRequestSlot,
  encodeHeader,
  encodeReplySlot,
  encodeRequestSlot,
  HEADER_VERSION,
  mailboxBytes,
  inventoryOffset,
  wakeUpOffset,
  encodeWakeUp,
  MAX_HOSTS_LIMIT,
  replySlotOffset,
  requestSlotOffset,
  type Decoded,
  type MailboxHeader,
  type Reply,
  type Request,
  type Slot,
} from './format.js';

export class MailboxFormatError extends TideError {
  readonly code = 'mailbox-format';
}

export class HostIdError extends TideError {
  readonly code = 'host-id';
}

export class MailboxTooSmallError extends TideError {
  readonly code = 'mailbox-too-small';
}

/**
 * The mailbox volume: the header, and the slots read and written whole with
 * direct I/O. Holds no state of its own beyond the open file; the host and SPM
 * sides keep theirs.
 */
export class Mailbox {
  private constructor(
    readonly path: string,
    readonly header: MailboxHeader,
    private readonly file: DirectBlockFile,
  ) {}

  get maxHosts(): number {
    return this.header.maxHosts;
  }

  /** Bytes this mailbox handle read from the storage so far. */
  get bytesRead(): number {
    return this.file.bytesRead;
  }

  /** Writes a new, empty mailbox. Refuses to overwrite a valid one unless `force`: every host's pending requests would vanish. */
  static async init(path: string, options: { maxHosts: number; force?: boolean }): Promise<MailboxHeader> {
    if (!Number.isInteger(options.maxHosts) || options.maxHosts < 1 || options.maxHosts > MAX_HOSTS_LIMIT) {
      throw new MailboxFormatError(`max hosts ${options.maxHosts} must be 1..${MAX_HOSTS_LIMIT}`);
    }
    const bytes = mailboxBytes(options.maxHosts);
    // A regular file (lab) is created and sized; a block device (LV) must already be big enough.
    const handle = await open(path, 'a');
    await handle.close();
    const info = await stat(path);
    if (info.isFile() && info.size < bytes) {
      const sizing = await open(path, 'r+');
      await sizing.truncate(bytes);
      await sizing.close();
    }
    const file = await DirectBlockFile.open(path, bytes);
    try {
      const existing = decodeHeader(await file.read(0, BLOCK_BYTES));
      if (existing.kind === 'valid' && !options.force) {
        throw new MailboxFormatError(`${path} already holds a mailbox (id ${existing.value.mailboxId}, ${existing.value.maxHosts} hosts); pass --force to wipe it and every pending request`);
      }
      const header: MailboxHeader = { version: HEADER_VERSION, maxHosts: options.maxHosts, mailboxId: randomUUID(), createdAtMs: Date.now() };
      const image = Buffer.alloc(bytes);
      encodeHeader(header).copy(image, 0);
      await file.write(0, image);
      return header;
    } finally {
      await file.close();
    }
  }

  static async open(path: string): Promise<Mailbox> {
    const probe = await DirectBlockFile.open(path, BLOCK_BYTES);
    let decoded: Decoded<MailboxHeader>;
    try {
      decoded = decodeHeader(await probe.read(0, BLOCK_BYTES));
    } finally {
      await probe.close();
    }
    if (decoded.kind === 'empty') throw new MailboxFormatError(`${path} holds no mailbox; create one with 'tideline mailbox init ${path}'`);
    if (decoded.kind === 'invalid') throw new MailboxFormatError(`${path} has no usable mailbox header (${decoded.reason}: ${decoded.detail})`);
    const header = decoded.value;
    const file = await DirectBlockFile.open(path, header.maxHosts * BLOCK_BYTES);
    return new Mailbox(path, header, file);
  }

  assertHostId(hostId: number): void {
    if (!Number.isInteger(hostId) || hostId < 1 || hostId > this.maxHosts) {
      throw new HostIdError(`host id ${hostId} is outside this mailbox's 1..${this.maxHosts}; give every host a distinct id in that range`);
    }
  }

  /** Every host's request slot in one read: the SPM's poll. */
  async readAllRequests(): Promise<Map<number, Decoded<Slot<Request>>>> {
    const blocks = await this.readRequestBlocks();
    return new Map(blocks.map((block, index) => [index + 1, decodeRequestSlot(block, index + 1)]));
  }

  /** Every host's request slot as raw bytes (index 0 is host 1), in one read. */
  async readRequestBlocks(): Promise<Buffer[]> {
    const region = await this.file.read(requestSlotOffset(1), this.maxHosts * BLOCK_BYTES);
    return Array.from({ length: this.maxHosts }, (_, index) => region.subarray(index * BLOCK_BYTES, (index + 1) * BLOCK_BYTES));
  }

  async readAllReplies(): Promise<Map<number, Decoded<Slot<Reply>>>> {
    const region = await this.file.read(replySlotOffset(1, this.maxHosts), this.maxHosts * BLOCK_BYTES);
    const slots = new Map<number, Decoded<Slot<Reply>>>();
    for (let hostId = 1; hostId <= this.maxHosts; hostId += 1) {
      const start = (hostId - 1) * BLOCK_BYTES;
      slots.set(hostId, decodeReplySlot(region.subarray(start, start + BLOCK_BYTES), hostId));
    }
    return slots;
  }

  async readRequests(hostId: number): Promise<Decoded<Slot<Request>>> {
    this.assertHostId(hostId);
    return decodeRequestSlot(await this.file.read(requestSlotOffset(hostId), BLOCK_BYTES), hostId);
  }

  async readReplies(hostId: number): Promise<Decoded<Slot<Reply>>> {
    this.assertHostId(hostId);
    return decodeReplySlot(await this.file.read(replySlotOffset(hostId, this.maxHosts), BLOCK_BYTES), hostId);
  }

  async writeRequests(slot: Slot<Request>): Promise<void> {
    this.assertHostId(slot.hostId);
    await this.file.write(requestSlotOffset(slot.hostId), encodeRequestSlot(slot));
  }

  async writeReplies(slot: Slot<Reply>): Promise<void> {
    this.assertHostId(slot.hostId);
    await this.file.write(replySlotOffset(slot.hostId, this.maxHosts), encodeReplySlot(slot));
  }

  /** Reply slots of consecutive hosts, starting at `slots[0].hostId`, in one write: one I/O per SPM round however many hosts were served. */
  async writeReplyRange(slots: ReadonlyArray<Slot<Reply>>): Promise<void> {
    if (slots.length === 0) return;
    const first = slots[0]!.hostId;
    slots.forEach((slot, index) => {
      if (slot.hostId !== first + index) throw new RangeError(`reply slots must be consecutive: host ${slot.hostId} at position ${index} after host ${first}`);
      this.assertHostId(slot.hostId);
    });
    await this.file.write(replySlotOffset(first, this.maxHosts), Buffer.concat(slots.map((slot) => encodeReplySlot(slot))));
  }

  /** Raw block write into a host's request slot, reply slot or inventory, for tests that corrupt or lose one on purpose. */
  async writeRawBlock(region: 'request' | 'reply' | 'inventory', hostId: number, block: Uint8Array): Promise<void> {
    this.assertHostId(hostId);
    await this.file.write(this.blockOffset(region, hostId), block);
  }

  private blockOffset(region: 'request' | 'reply' | 'inventory', hostId: number): number {
    if (region === 'request') return requestSlotOffset(hostId);
    return region === 'reply' ? replySlotOffset(hostId, this.maxHosts) : inventoryOffset(hostId, this.maxHosts);
  }

  /** Wakes a quiet SPM: written by any host right after it wrote a new request into its slot. */
  async writeWakeUp(hostId: number): Promise<void> {
    this.assertHostId(hostId);
    await this.file.write(wakeUpOffset(this.maxHosts), encodeWakeUp(hostId, BigInt.asUintN(64, BigInt(Date.now()) * 1_000_000n + BigInt(randomInt(1_000_000)))));
  }

  /** The wake-up block's bytes, compared by the SPM with what it read last. */
  readWakeUpBlock(): Promise<Buffer> {
    return this.readPastReplies(wakeUpOffset(this.maxHosts), BLOCK_BYTES, 'no wake-up block after its inventories');
  }

  /** This host's inventory block (src/mailbox/inventory.ts). */
  async writeInventory(hostId: number, activeVolumes: readonly string[], heartbeat: number, incomingViews?: ReadonlyMap<string, number>, writtenAtMs = Date.now()): Promise<void> {
    this.assertHostId(hostId);
    await this.file.write(inventoryOffset(hostId, this.maxHosts), encodeInventory(hostId, heartbeat, activeVolumes, incomingViews, writtenAtMs));
  }

  /** Zeroes a host's inventory block: only for a host that is down for good (`tideline mailbox forget-host`). */
  clearInventory(hostId: number): Promise<void> {
    return this.writeRawBlock('inventory', hostId, Buffer.alloc(BLOCK_BYTES));
  }

  /**
   * Every host's inventory in one read. A mailbox made before inventories
   * existed ends after the reply slots: then this says so with
   * MailboxTooSmallError, and the caller cannot tell what other hosts have open.
   */
  async readInventories(): Promise<Map<number, Decoded<Inventory>>> {
    const region = await this.readPastReplies(inventoryOffset(1, this.maxHosts), this.maxHosts * BLOCK_BYTES, 'no room for host inventories after its reply slots');
    const inventories = new Map<number, Decoded<Inventory>>();
    for (let hostId = 1; hostId <= this.maxHosts; hostId += 1) inventories.set(hostId, decodeInventory(region.subarray((hostId - 1) * BLOCK_BYTES, hostId * BLOCK_BYTES), hostId));
    return inventories;
  }

  /** What lies after the reply slots is missing in a mailbox an older tideline made: say that, not "short read". */
  private async readPastReplies(offset: number, length: number, missing: string): Promise<Buffer> {
    try {
      return await this.file.read(offset, length);
    } catch (error) {
      throw new MailboxTooSmallError(`${this.path} has ${missing} (made by an older tideline, or too small a volume: it needs ${mailboxBytes(this.maxHosts)} bytes); grow it and run 'tideline mailbox init --force' while no host has requests in flight`, { cause: error });
    }
  }

  close(): Promise<void> {
    return this.file.close();
  }
}
