import ipaddr from 'ipaddr.js';
import type { UdpEndpoint } from '../util/address-text.js';
import { crc32 } from 'node:zlib';

/**
 * The mailbox's on-disk format (docs/mailbox-format.md), as pure functions over
 * bytes. Block 0 is the header; then one request slot per host, written only
 * by that host; then one reply slot per host, written only by the SPM. Every
 * slot is one 4 KiB block with its own CRC32, so a torn or foreign write is
 * detected and ignored, never acted on. No locks: each block has one writer.
 */
export const BLOCK_BYTES = 4096;
/** The version each slot, inventory and wake-up block carries: their layout has not changed since the first. */
export const FORMAT_VERSION = 1;
/**
 * The header's version, which says what the volume holds. 1: header, request
 * and reply slots, and (in mailboxes made by later tidelines) inventories and
 * the wake-up block, which an SPM finds out by reading them. 2: all five,
 * always (docs/mailbox-format.md). A tideline that reads only 1 refuses a 2
 * with "mailbox format version 2", rather than joining without wake-ups.
 */
export const HEADER_VERSION = 2;
export const READABLE_HEADER_VERSIONS: readonly number[] = [1, 2];

/** Whether a mailbox with this header version surely holds inventories and the wake-up block (see HEADER_VERSION). */
export function holdsEveryRegion(headerVersion: number): boolean {
  return headerVersion >= 2;
}
export const HEADER_MAGIC = 'TIDELINE-MAILBOX';
export const REQUEST_MAGIC = 'TLRQ';
export const REPLY_MAGIC = 'TLRP';
export const MAX_HOSTS_LIMIT = 2000;

export const SLOT_HEADER_BYTES = 64;
export const MESSAGE_BYTES = 192;
export const MESSAGES_PER_SLOT = 20;
export const MAX_VOLUME_NAME_BYTES = 128;

const VOLUME_NAME = /^[A-Za-z0-9_+][A-Za-z0-9_.+-]{0,127}$/;

export enum Operation {
  Extend = 1,
  Create = 2,
  Delete = 3,
  /** Create a thin volume whose qcow2 image has another volume as its backing file (a snapshot's new top, a template's child). */
  CreateChild = 4,
  /** Shrink a volume nobody uses to its image's end plus the free target in `targetBytes`. */
  Reduce = 5,
  /** Record that `volume`'s image is now backed by `parent` (after an inner commit merged its old parent away). */
  Reparent = 6,
  /** Grow the image's virtual size to `virtualBytes` (offline), or record the size a live blockresize gave it. */
  Resize = 7,
  /**
   * Bring the volume's record up to its image: the backing volume its header
   * names becomes its parent (none after a full block pull), and a grown
   * virtual size is recorded. Asked by a host after a block job changed the
   * chain behind tideline's back.
   */
  FollowImage = 8,
}

/** A create-child message holds both names in the 152 bytes from offset 40 to the end of the message. */
export const MAX_CHILD_AND_PARENT_NAME_BYTES = 152;

/** Reply status codes; stable, part of the on-disk format. */
export enum ReplyStatus {
  Ok = 0,
  UnknownVolume = 1,
  ShrinkRefused = 2,
  BeyondCap = 3,
  DomainFull = 4,
  StaleSequence = 5,
  InvalidRequest = 6,
  VolumeExists = 7,
  Failed = 8,
  VolumeInUse = 9,
  HasChildren = 10,
}

export const REPLY_STATUS_CODES: Record<ReplyStatus, string> = {
  [ReplyStatus.Ok]: 'ok',
  [ReplyStatus.UnknownVolume]: 'volume-not-found',
  [ReplyStatus.ShrinkRefused]: 'shrink-refused',
  [ReplyStatus.BeyondCap]: 'cap-reached',
  [ReplyStatus.DomainFull]: 'domain-full',
  [ReplyStatus.StaleSequence]: 'stale-sequence',
  [ReplyStatus.InvalidRequest]: 'invalid-request',
  [ReplyStatus.VolumeExists]: 'volume-exists',
  [ReplyStatus.Failed]: 'spm-failed',
  [ReplyStatus.VolumeInUse]: 'volume-in-use',
  [ReplyStatus.HasChildren]: 'volume-has-children',
};

export interface MailboxHeader {
  version: number;
  maxHosts: number;
  /** Identifies this mailbox, so that a slot copied from another one is noticed. */
  mailboxId: string;
  createdAtMs: number;
}

export interface Request {
  sequence: number;
  operation: Operation;
  volume: string;
  /** Absolute size wanted (extend) or initial size (create). */
  targetBytes: number;
  /** Virtual size of the qcow2 image (create); it sets the volume's cap. 0 for create-child: the parent's. */
  virtualBytes: number;
  /** The backing volume (create-child only). */
  parent?: string;
}

export interface Reply {
  sequence: number;
  status: ReplyStatus;
  /** Size of the volume after serving the request (0 when unknown). */
  resultBytes: number;
}

export interface Slot<T> {
  hostId: number;
  /** Bumped on every write by the slot's writer: tells a new write from a re-read. */
  generation: number;
  /** Index i holds message i, or undefined when free. */
  messages: Array<T | undefined>;
  /** Reply slots only: the SPM that wrote the slot, and where its doorbell listens (absent in slots of older SPMs). */
  spm?: SpmNotice;
}

/**
 * What the SPM says about itself in every reply slot it writes, in the slot
 * header's reserved bytes: its host id, and the UDP address of its doorbell
 * when it listens on one, so hosts learn where to ring without a list of the
 * SPM candidates (docs/mailbox-format.md, "Doorbell").
 */
export interface SpmNotice {
  hostId: number;
  doorbell?: UdpEndpoint;
}

export type DecodeFailure = 'bad-magic' | 'foreign-version' | 'bad-checksum' | 'wrong-host' | 'bad-message' | 'bad-size' | 'bad-count' | 'bad-heartbeat';
export type Decoded<T> = { kind: 'empty' } | { kind: 'valid'; value: T } | { kind: 'invalid'; reason: DecodeFailure; detail: string };

/** Header, request slots, reply slots, one inventory block per host (src/mailbox/inventory.ts), and the wake-up block. */
export function mailboxBytes(maxHosts: number): number {
  return (2 + 3 * maxHosts) * BLOCK_BYTES;
}

export function requestSlotOffset(hostId: number): number {
  return hostId * BLOCK_BYTES;
}

export function replySlotOffset(hostId: number, maxHosts: number): number {
  return (maxHosts + hostId) * BLOCK_BYTES;
}

export function inventoryOffset(hostId: number, maxHosts: number): number {
  return (2 * maxHosts + hostId) * BLOCK_BYTES;
}

export function wakeUpOffset(maxHosts: number): number {
  return (1 + 3 * maxHosts) * BLOCK_BYTES;
}

// ---- wake-up block -----------------------------------------------------------

export const WAKE_UP_MAGIC = 'TLWK';
const WAKE_UP_CRC_OFFSET = 20;

/**
 * The one block every host writes: after it wrote a new request into its own
 * slot, a host rewrites this block with its id and a fresh nonce. A quiet SPM
 * reads only this block, often, and scans every slot when its bytes changed;
 * nothing in it is acted on, so a torn or lost write costs at most latency
 * (a slow full scan catches what a wake-up missed).
 */
export function encodeWakeUp(hostId: number, nonce: bigint): Buffer {
  assertHostCount(hostId);
  const block = Buffer.alloc(BLOCK_BYTES);
  block.write(WAKE_UP_MAGIC, 0, 'ascii');
  block.writeUInt16LE(FORMAT_VERSION, 4);
  block.writeUInt16LE(hostId, 6);
  block.writeBigUInt64LE(nonce, 8);
  return sealBlock(block, WAKE_UP_CRC_OFFSET);
}

// ---- header ----------------------------------------------------------------

const HEADER_CRC_OFFSET = 60;

export function encodeHeader(header: MailboxHeader): Buffer {
  assertHostCount(header.maxHosts);
  const block = Buffer.alloc(BLOCK_BYTES);
  block.write(HEADER_MAGIC, 0, 'ascii');
  block.writeUInt32LE(header.version, 16);
  block.writeUInt32LE(header.maxHosts, 20);
  block.writeUInt32LE(BLOCK_BYTES, 24);
  block.writeUInt32LE(MESSAGES_PER_SLOT, 28);
  writeUuid(block, 32, header.mailboxId);
  block.writeBigUInt64LE(BigInt(header.createdAtMs), 48);
  return sealBlock(block, HEADER_CRC_OFFSET);
}

export function decodeHeader(block: Uint8Array): Decoded<MailboxHeader> {
  const buffer = asBuffer(block);
  if (buffer.length < BLOCK_BYTES) return invalid('bad-size', `header is ${buffer.length} bytes, expected ${BLOCK_BYTES}`);
  if (isZero(buffer)) return { kind: 'empty' };
  if (buffer.toString('ascii', 0, 16) !== HEADER_MAGIC) return invalid('bad-magic', 'not a tideline mailbox header');
  if (!checksumMatches(buffer, HEADER_CRC_OFFSET)) return invalid('bad-checksum', 'mailbox header checksum mismatch');
  const version = buffer.readUInt32LE(16);
  if (!READABLE_HEADER_VERSIONS.includes(version)) return invalid('foreign-version', `mailbox format version ${version}, this tideline reads ${READABLE_HEADER_VERSIONS.join(' and ')}; a newer tideline made it: upgrade this host`);
  const maxHosts = buffer.readUInt32LE(20);
  if (maxHosts < 1 || maxHosts > MAX_HOSTS_LIMIT || buffer.readUInt32LE(24) !== BLOCK_BYTES || buffer.readUInt32LE(28) !== MESSAGES_PER_SLOT) {
    return invalid('bad-message', 'mailbox geometry is not one this tideline can use');
  }
  return { kind: 'valid', value: { version, maxHosts, mailboxId: readUuid(buffer, 32), createdAtMs: Number(buffer.readBigUInt64LE(48)) } };
}

// ---- slots -----------------------------------------------------------------

const SLOT_CRC_OFFSET = 20;

export function encodeRequestSlot(slot: Slot<Request>): Buffer {
  return encodeSlot(REQUEST_MAGIC, slot, (message, view) => {
    writeCommon(view, message.sequence, message.volume);
    view.writeUInt8(message.operation, 8);
    if (carriesParent(message.operation)) writeParent(view, message.volume, message.parent);
    writeSize(view, 16, message.targetBytes);
    writeSize(view, 24, message.virtualBytes);
  });
}

export function encodeReplySlot(slot: Slot<Reply>): Buffer {
  const block = encodeSlot(REPLY_MAGIC, slot, (message, view) => {
    view.writeBigUInt64LE(BigInt(message.sequence), 0);
    view.writeUInt8(message.status, 9);
    writeSize(view, 32, message.resultBytes);
  });
  if (!slot.spm) return block;
  writeSpmNotice(block, slot.spm);
  return sealBlock(block, SLOT_CRC_OFFSET);
}

export function decodeRequestSlot(block: Uint8Array, expectedHostId: number): Decoded<Slot<Request>> {
  return decodeSlot(block, REQUEST_MAGIC, expectedHostId, (view) => {
    const operation = view.readUInt8(8);
    if (!(operation in Operation) || typeof Operation[operation] !== 'string') return `unknown operation ${operation}`;
    const volume = readName(view);
    if (typeof volume !== 'string') return volume.error;
    const targetBytes = readSize(view, 16);
    const virtualBytes = readSize(view, 24);
    if (targetBytes === undefined || virtualBytes === undefined) return 'size beyond 2^53 bytes';
    const request: Request = { sequence: Number(view.readBigUInt64LE(0)), operation: operation as Operation, volume, targetBytes, virtualBytes };
    if (!carriesParent(operation)) return request;
    const parent = readParent(view, volume.length);
    return typeof parent === 'string' ? { ...request, parent } : parent.error;
  });
}

export function decodeReplySlot(block: Uint8Array, expectedHostId: number): Decoded<Slot<Reply>> {
  const decoded = decodeSlot<Reply>(block, REPLY_MAGIC, expectedHostId, (view) => {
    const status = view.readUInt8(9);
    if (!(status in REPLY_STATUS_CODES)) return `unknown reply status ${status}`;
    const resultBytes = readSize(view, 32);
    if (resultBytes === undefined) return 'size beyond 2^53 bytes';
    return { sequence: Number(view.readBigUInt64LE(0)), status: status as ReplyStatus, resultBytes };
  });
  if (decoded.kind !== 'valid') return decoded;
  const spm = readSpmNotice(asBuffer(block));
  return spm ? { kind: 'valid', value: { ...decoded.value, spm } } : decoded;
}

/** Two notices naming the same SPM and the same doorbell. */
export function sameNotice(left: SpmNotice | undefined, right: SpmNotice | undefined): boolean {
  return left?.hostId === right?.hostId && left?.doorbell?.address === right?.doorbell?.address && left?.doorbell?.port === right?.doorbell?.port;
}

// ---- the SPM's notice in a reply slot's header (bytes 24..63, zero in older slots) ----

const NOTICE_HOST_ID_OFFSET = 24;
const NOTICE_FAMILY_OFFSET = 26;
const NOTICE_PORT_OFFSET = 28;
const NOTICE_ADDRESS_OFFSET = 30;

function writeSpmNotice(block: Buffer, notice: SpmNotice): void {
  assertHostCount(notice.hostId);
  block.writeUInt16LE(notice.hostId, NOTICE_HOST_ID_OFFSET);
  if (!notice.doorbell) return;
  const { address, port } = notice.doorbell;
  if (!ipaddr.isValid(address)) throw new RangeError(`doorbell address ${JSON.stringify(address)} is not an IP address`);
  if (!Number.isInteger(port) || port < 1 || port > 65_535) throw new RangeError(`doorbell port ${port} must be 1..65535`);
  const bytes = ipaddr.parse(address).toByteArray();
  block.writeUInt8(bytes.length === 4 ? 4 : 6, NOTICE_FAMILY_OFFSET);
  block.writeUInt16LE(port, NOTICE_PORT_OFFSET);
  Buffer.from(bytes).copy(block, NOTICE_ADDRESS_OFFSET);
}

/**
 * The notice, or undefined where none was written (host id 0: an older SPM).
 * A doorbell it cannot read (an unknown address family, port 0) is left out
 * rather than failing the slot: the replies in it are what matters, and the
 * doorbell is only a hint.
 */
function readSpmNotice(block: Buffer): SpmNotice | undefined {
  const hostId = block.readUInt16LE(NOTICE_HOST_ID_OFFSET);
  if (hostId === 0 || hostId > MAX_HOSTS_LIMIT) return undefined;
  const family = block.readUInt8(NOTICE_FAMILY_OFFSET);
  const port = block.readUInt16LE(NOTICE_PORT_OFFSET);
  if ((family !== 4 && family !== 6) || port === 0) return { hostId };
  const bytes = block.subarray(NOTICE_ADDRESS_OFFSET, NOTICE_ADDRESS_OFFSET + (family === 4 ? 4 : 16));
  return { hostId, doorbell: { address: ipaddr.fromByteArray([...bytes]).toString(), port } };
}

function encodeSlot<T extends { sequence: number }>(magic: string, slot: Slot<T>, writeMessage: (message: T, view: Buffer) => void): Buffer {
  assertHostCount(slot.hostId);
  if (slot.messages.length > MESSAGES_PER_SLOT) throw new RangeError(`a slot holds ${MESSAGES_PER_SLOT} messages, not ${slot.messages.length}`);
  const block = Buffer.alloc(BLOCK_BYTES);
  block.write(magic, 0, 'ascii');
  block.writeUInt16LE(FORMAT_VERSION, 4);
  block.writeUInt16LE(slot.hostId, 6);
  block.writeBigUInt64LE(BigInt(slot.generation), 8);
  block.writeUInt32LE(MESSAGES_PER_SLOT, 16);
  slot.messages.forEach((message, index) => {
    if (!message) return;
    if (!Number.isSafeInteger(message.sequence) || message.sequence < 1) throw new RangeError(`sequence ${message.sequence} must be a positive integer`);
    writeMessage(message, messageView(block, index));
  });
  return sealBlock(block, SLOT_CRC_OFFSET);
}

function decodeSlot<T>(block: Uint8Array, magic: string, expectedHostId: number, readMessage: (view: Buffer) => T | string): Decoded<Slot<T>> {
  const buffer = asBuffer(block);
  if (buffer.length !== BLOCK_BYTES) return invalid('bad-size', `slot is ${buffer.length} bytes, expected ${BLOCK_BYTES}`);
  if (isZero(buffer)) return { kind: 'empty' };
  if (buffer.toString('ascii', 0, 4) !== magic) return invalid('bad-magic', `expected ${magic}, found ${JSON.stringify(buffer.toString('latin1', 0, 4))}`);
  // The checksum first: in a torn slot no other field can be trusted, the version included.
  if (!checksumMatches(buffer, SLOT_CRC_OFFSET)) return invalid('bad-checksum', 'slot checksum mismatch (torn or corrupted write)');
  const version = buffer.readUInt16LE(4);
  if (version !== FORMAT_VERSION) return invalid('foreign-version', `slot format version ${version}, this tideline reads ${FORMAT_VERSION}`);
  const hostId = buffer.readUInt16LE(6);
  if (hostId !== expectedHostId) return invalid('wrong-host', `slot of host ${expectedHostId} claims host ${hostId}`);
  if (buffer.readUInt32LE(16) !== MESSAGES_PER_SLOT) return invalid('bad-message', `slot claims ${buffer.readUInt32LE(16)} messages`);
  const generation = Number(buffer.readBigUInt64LE(8));
  const messages: Array<T | undefined> = [];
  for (let index = 0; index < MESSAGES_PER_SLOT; index += 1) {
    const view = messageView(buffer, index);
    if (view.readBigUInt64LE(0) === 0n) {
      messages.push(undefined);
      continue;
    }
    const message = readMessage(view);
    if (typeof message === 'string') return invalid('bad-message', `message ${index}: ${message}`);
    messages.push(message);
  }
  return { kind: 'valid', value: { hostId, generation, messages } };
}

function writeCommon(view: Buffer, sequence: number, volume: string): void {
  if (!VOLUME_NAME.test(volume)) throw new RangeError(`volume name ${JSON.stringify(volume)} cannot go into a mailbox message`);
  view.writeBigUInt64LE(BigInt(sequence), 0);
  view.writeUInt8(volume.length, 10);
  view.write(volume, 40, 'ascii');
}

/** Messages that name a second volume, right after the first. */
export function carriesParent(operation: Operation): boolean {
  return operation === Operation.CreateChild || operation === Operation.Reparent;
}

function writeParent(view: Buffer, child: string, parent: string | undefined): void {
  if (parent === undefined || !VOLUME_NAME.test(parent)) throw new RangeError(`${child}: this operation needs a valid parent volume name, not ${JSON.stringify(parent)}`);
  if (child.length + parent.length > MAX_CHILD_AND_PARENT_NAME_BYTES) throw new RangeError(`volume names ${child} and ${parent} together are longer than ${MAX_CHILD_AND_PARENT_NAME_BYTES} bytes`);
  view.writeUInt8(parent.length, 11);
  view.write(parent, 40 + child.length, 'ascii');
}

function readParent(view: Buffer, childLength: number): string | { error: string } {
  const length = view.readUInt8(11);
  if (length < 1 || childLength + length > MAX_CHILD_AND_PARENT_NAME_BYTES) return { error: `parent name length ${length}` };
  const name = view.toString('latin1', 40 + childLength, 40 + childLength + length);
  return VOLUME_NAME.test(name) ? name : { error: `parent name ${JSON.stringify(name)} is not valid` };
}

function readName(view: Buffer): string | { error: string } {
  const length = view.readUInt8(10);
  if (length < 1 || length > MAX_VOLUME_NAME_BYTES) return { error: `volume name length ${length}` };
  const name = view.toString('latin1', 40, 40 + length);
  return VOLUME_NAME.test(name) ? name : { error: `volume name ${JSON.stringify(name)} is not valid` };
}

function writeSize(view: Buffer, offset: number, bytes: number): void {
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw new RangeError(`size ${bytes} must be a non-negative integer`);
  view.writeBigUInt64LE(BigInt(bytes), offset);
}

function readSize(view: Buffer, offset: number): number | undefined {
  const value = view.readBigUInt64LE(offset);
  return value > BigInt(Number.MAX_SAFE_INTEGER) ? undefined : Number(value);
}

function messageView(block: Buffer, index: number): Buffer {
  const start = SLOT_HEADER_BYTES + index * MESSAGE_BYTES;
  return block.subarray(start, start + MESSAGE_BYTES);
}

/** Writes the block's CRC32 into its field, computed with that field zero (every block of the mailbox is sealed so). */
export function sealBlock(block: Buffer, crcOffset: number): Buffer {
  block.writeUInt32LE(0, crcOffset);
  block.writeUInt32LE(crc32(block), crcOffset);
  return block;
}

export function checksumMatches(block: Buffer, crcOffset: number): boolean {
  const stored = block.readUInt32LE(crcOffset);
  const copy = Buffer.from(block);
  copy.writeUInt32LE(0, crcOffset);
  return crc32(copy) === stored;
}

/** A UUID's 16 bytes at `offset` (the mailbox id, in the header and in doorbell rings). */
export function writeUuid(buffer: Buffer, offset: number, uuid: string): void {
  const hex = uuid.replace(/-/g, '');
  if (!/^[0-9a-f]{32}$/i.test(hex)) throw new RangeError(`'${uuid}' is not a UUID`);
  Buffer.from(hex, 'hex').copy(buffer, offset);
}

export function readUuid(buffer: Buffer, offset: number): string {
  const hex = buffer.toString('hex', offset, offset + 16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export function isZero(buffer: Buffer): boolean {
  for (let index = 0; index < buffer.length; index += 1) if (buffer[index] !== 0) return false;
  return true;
}

export function asBuffer(block: Uint8Array): Buffer {
  return Buffer.isBuffer(block) ? block : Buffer.from(block.buffer, block.byteOffset, block.byteLength);
}

export function invalid(reason: DecodeFailure, detail: string): Decoded<never> {
  return { kind: 'invalid', reason, detail };
}

export function assertHostCount(value: number): void {
  if (!Number.isInteger(value) || value < 1 || value > MAX_HOSTS_LIMIT) throw new RangeError(`host id / host count ${value} must be 1..${MAX_HOSTS_LIMIT}`);
}
