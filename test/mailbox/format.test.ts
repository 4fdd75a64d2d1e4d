import assert from 'node:assert/strict';
import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import ipaddr from 'ipaddr.js';
import {
  BLOCK_BYTES,
  decodeHeader,
  decodeReplySlot,
  decodeRequestSlot,
  encodeHeader,
  encodeReplySlot,
  encodeRequestSlot,
  HEADER_VERSION,
  MAX_CHILD_AND_PARENT_NAME_BYTES,
  MESSAGES_PER_SLOT,
  Operation,
  ReplyStatus,
  type Reply,
  type Request,
  type Slot,
  type SpmNotice,
} from '../../src/mailbox/format.js';

const volumeName = fc.stringMatching(/^[A-Za-z0-9_+][A-Za-z0-9_.+-]{0,127}$/);
const size = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const plainRequest: fc.Arbitrary<Request> = fc.record({
  sequence: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
  operation: fc.constantFrom(Operation.Extend, Operation.Create, Operation.Delete, Operation.Reduce, Operation.Resize, Operation.FollowImage),
  volume: volumeName,
  targetBytes: size,
  virtualBytes: size,
}, { noNullPrototype: true });
/** Both names of a create-child share the 152 bytes from offset 40. */
const childRequest: fc.Arbitrary<Request> = fc
  .record({
    sequence: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
    operation: fc.constantFrom(Operation.CreateChild, Operation.Reparent),
    volume: volumeName,
    targetBytes: size,
    virtualBytes: size,
    parent: volumeName,
  }, { noNullPrototype: true })
  .filter((message) => message.volume.length + message.parent!.length <= MAX_CHILD_AND_PARENT_NAME_BYTES);
const request = fc.oneof(plainRequest, childRequest);
const reply: fc.Arbitrary<Reply> = fc.record({
  sequence: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
  status: fc.constantFrom(...(Object.values(ReplyStatus).filter((value) => typeof value === 'number') as ReplyStatus[])),
  resultBytes: size,
}, { noNullPrototype: true });
function slotOf<T>(message: fc.Arbitrary<T>): fc.Arbitrary<Slot<T>> {
  return fc.record({
    hostId: fc.integer({ min: 1, max: 2000 }),
    generation: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
    messages: fc.array(fc.option(message, { nil: undefined }), { minLength: MESSAGES_PER_SLOT, maxLength: MESSAGES_PER_SLOT }),
  }, { noNullPrototype: true });
}

const spmNotice: fc.Arbitrary<SpmNotice> = fc.record(
  {
    hostId: fc.integer({ min: 1, max: 2000 }),
    doorbell: fc.option(
      fc.record({ address: fc.oneof(fc.ipV4(), fc.ipV6()), port: fc.integer({ min: 1, max: 65_535 }) }, { noNullPrototype: true }),
      { nil: undefined },
    ),
  },
  { noNullPrototype: true, requiredKeys: ['hostId'] },
);

/** Re-seals a block after a deliberate edit, as a writer of another format version would. */
function reseal(block: Buffer): Buffer {
  block.writeUInt32LE(0, 20);
  block.writeUInt32LE(crc32(block), 20);
  return block;
}

describe('mailbox format', () => {
  it('property: request and reply slots survive encode/decode unchanged', () => {
    fc.assert(
      fc.property(slotOf(request), (slot) => {
        assert.deepEqual(decodeRequestSlot(encodeRequestSlot(slot), slot.hostId), { kind: 'valid', value: slot });
      }),
    );
    fc.assert(
      fc.property(slotOf(reply), (slot) => {
        assert.deepEqual(decodeReplySlot(encodeReplySlot(slot), slot.hostId), { kind: 'valid', value: slot });
      }),
    );
  });

  it("property: a reply slot carries the SPM's notice (host id, doorbell address and port) beside its replies", () => {
    fc.assert(
      fc.property(slotOf(reply), spmNotice, (slot, spm) => {
        const decoded = decodeReplySlot(encodeReplySlot({ ...slot, spm }), slot.hostId);
        assert.equal(decoded.kind, 'valid');
        if (decoded.kind !== 'valid') return;
        assert.deepEqual(decoded.value.messages, slot.messages);
        assert.equal(decoded.value.spm?.hostId, spm.hostId);
        if (!spm.doorbell) return assert.equal(decoded.value.spm?.doorbell, undefined);
        // Addresses come back in their canonical text (IPv6 compressed); the same address either way.
        assert.equal(decoded.value.spm?.doorbell?.port, spm.doorbell.port);
        assert.deepEqual(ipaddr.parse(decoded.value.spm!.doorbell!.address).toByteArray(), ipaddr.parse(spm.doorbell.address).toByteArray());
      }),
    );
  });

  it('reads no notice from a slot an older SPM wrote, and leaves out a doorbell it cannot read without failing the replies', () => {
    const slot: Slot<Reply> = { hostId: 4, generation: 3, messages: [{ sequence: 9, status: ReplyStatus.Ok, resultBytes: 4096 }, ...new Array<undefined>(MESSAGES_PER_SLOT - 1).fill(undefined)] };
    assert.deepEqual(decodeReplySlot(encodeReplySlot(slot), 4), { kind: 'valid', value: slot });
    const block = encodeReplySlot({ ...slot, spm: { hostId: 7, doorbell: { address: '192.0.2.10', port: 7979 } } });
    assert.deepEqual(block.subarray(24, 36), Buffer.from([7, 0, 4, 0, 0x2b, 0x1f, 192, 0, 2, 10, 0, 0]));
    block.writeUInt8(9, 26); // an address family this tideline does not know
    const decoded = decodeReplySlot(reseal(block), 4);
    assert.deepEqual(decoded, { kind: 'valid', value: { ...slot, spm: { hostId: 7 } } });
    assert.throws(() => encodeReplySlot({ ...slot, spm: { hostId: 7, doorbell: { address: 'spm.example', port: 7979 } } }), /not an IP address/);
    assert.throws(() => encodeReplySlot({ ...slot, spm: { hostId: 7, doorbell: { address: '192.0.2.10', port: 0 } } }), /port 0/);
  });

  it('property: any changed byte of a slot is detected, never decoded as a message', () => {
    fc.assert(
      fc.property(slotOf(request), fc.nat(BLOCK_BYTES - 1), fc.integer({ min: 1, max: 255 }), (slot, offset, xor) => {
        const block = encodeRequestSlot(slot);
        block[offset]! ^= xor;
        assert.equal(decodeRequestSlot(block, slot.hostId).kind, 'invalid');
      }),
    );
  });

  it('property: a write torn at any sector boundary decodes as the old slot, the new slot, or invalid', () => {
    fc.assert(
      fc.property(slotOf(request), slotOf(request), fc.integer({ min: 1, max: BLOCK_BYTES / 512 - 1 }), (before, after, sectors) => {
        after.hostId = before.hostId;
        const old = encodeRequestSlot(before);
        const fresh = encodeRequestSlot(after);
        const torn = Buffer.concat([fresh.subarray(0, sectors * 512), old.subarray(sectors * 512)]);
        const decoded = decodeRequestSlot(torn, before.hostId);
        if (decoded.kind === 'valid') assert.ok(torn.equals(old) || torn.equals(fresh), 'a torn slot decoded as a third, never-written state');
        else assert.equal(decoded.kind, 'invalid');
      }),
    );
  });

  it('property: arbitrary bytes never throw and never decode as a valid slot or header', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: BLOCK_BYTES + 16 }), fc.integer({ min: 1, max: 2000 }), (bytes, hostId) => {
        for (const decoded of [decodeRequestSlot(bytes, hostId), decodeReplySlot(bytes, hostId), decodeHeader(bytes)]) {
          assert.notEqual(decoded.kind, 'valid');
        }
      }),
    );
  });

  it('reads an all-zero block as an empty slot, not an error', () => {
    assert.deepEqual(decodeRequestSlot(Buffer.alloc(BLOCK_BYTES), 3), { kind: 'empty' });
    assert.deepEqual(decodeHeader(Buffer.alloc(BLOCK_BYTES)), { kind: 'empty' });
  });

  it("reads both header versions, and refuses a newer one naming what to do", () => {
    const header = { version: HEADER_VERSION, maxHosts: 250, mailboxId: '1b4e28ba-2fa1-11d2-883f-0016d3cca427', createdAtMs: 1_790_000_000_000 };
    assert.equal(HEADER_VERSION, 2, 'mailboxes made now say they hold inventories and the wake-up block');
    assert.deepEqual(decodeHeader(encodeHeader(header)), { kind: 'valid', value: header });
    assert.deepEqual(decodeHeader(encodeHeader({ ...header, version: 1 })), { kind: 'valid', value: { ...header, version: 1 } });
    const newer = decodeHeader(encodeHeader({ ...header, version: 3 }));
    assert.equal(newer.kind, 'invalid');
    assert.equal(newer.kind === 'invalid' && newer.reason, 'foreign-version');
    assert.match(newer.kind === 'invalid' ? newer.detail : '', /^mailbox format version 3, this tideline reads 1 and 2; a newer tideline made it: upgrade this host$/);
  });

  it('rejects a foreign format version, a slot of another host, and a reply read as a request', () => {
    const slot: Slot<Request> = { hostId: 7, generation: 1, messages: [{ sequence: 1, operation: Operation.Extend, volume: 'vm1-vda', targetBytes: 1 << 30, virtualBytes: 0 }] };
    const block = encodeRequestSlot(slot);
    const foreign = reseal(Buffer.from(block).fill(0, 4, 6).fill(2, 4, 5));
    assert.equal(decodeRequestSlot(foreign, 7).kind === 'invalid' && (decodeRequestSlot(foreign, 7) as { reason: string }).reason, 'foreign-version');
    assert.deepEqual(decodeRequestSlot(block, 8), { kind: 'invalid', reason: 'wrong-host', detail: 'slot of host 8 claims host 7' });
    const asReply = decodeReplySlot(block, 7);
    assert.equal(asReply.kind === 'invalid' && asReply.reason, 'bad-magic');
  });

  it('rejects a sealed slot whose message holds an unknown operation or a bad volume name', () => {
    const block = encodeRequestSlot({ hostId: 1, generation: 1, messages: [{ sequence: 5, operation: Operation.Extend, volume: 'good', targetBytes: 1, virtualBytes: 0 }] });
    const badOperation = reseal(Buffer.from(block).fill(9, 64 + 8, 64 + 9));
    assert.match(JSON.stringify(decodeRequestSlot(badOperation, 1)), /unknown operation 9/);
    const badName = reseal(Buffer.from(block).fill(0x2f, 64 + 40, 64 + 41));
    assert.match(JSON.stringify(decodeRequestSlot(badName, 1)), /volume name .* is not valid/);
  });

  it('carries a create-child request with both names, and refuses names that together do not fit', () => {
    const message: Request = { sequence: 7, operation: Operation.CreateChild, volume: 'web01-vda-20261125', targetBytes: 1 << 30, virtualBytes: 0, parent: 'centos9-template' };
    const decoded = decodeRequestSlot(encodeRequestSlot({ hostId: 2, generation: 1, messages: [message] }), 2);
    assert.ok(decoded.kind === 'valid');
    assert.deepEqual(decoded.value.messages[0], message);
    assert.throws(() => encodeRequestSlot({ hostId: 2, generation: 1, messages: [{ ...message, volume: 'a'.repeat(100), parent: 'b'.repeat(60) }] }), /together are longer than 152 bytes/);
    assert.throws(() => encodeRequestSlot({ hostId: 2, generation: 1, messages: [{ ...message, parent: undefined }] }), /needs a valid parent/);
    const block = encodeRequestSlot({ hostId: 2, generation: 1, messages: [message] });
    const badParentLength = reseal(Buffer.from(block).fill(200, 64 + 11, 64 + 12));
    assert.match(JSON.stringify(decodeRequestSlot(badParentLength, 2)), /parent name length 200/);
  });

  it('refuses to encode what it could not decode', () => {
    assert.throws(() => encodeRequestSlot({ hostId: 1, generation: 0, messages: [{ sequence: 1, operation: Operation.Extend, volume: '../etc', targetBytes: 1, virtualBytes: 0 }] }), /volume name/);
    assert.throws(() => encodeRequestSlot({ hostId: 0, generation: 0, messages: [] }), /host id/);
    assert.throws(() => encodeReplySlot({ hostId: 1, generation: 0, messages: [{ sequence: 0, status: ReplyStatus.Ok, resultBytes: 0 }] }), /sequence 0/);
  });

  it('keeps the header: geometry and mailbox identity', () => {
    const header = { version: 1, maxHosts: 250, mailboxId: '0123abcd-4567-89ab-cdef-0123456789ab', createdAtMs: 1_790_000_000_000 };
    assert.deepEqual(decodeHeader(encodeHeader(header)), { kind: 'valid', value: header });
    const corrupted = encodeHeader(header);
    corrupted[21]! ^= 1;
    assert.equal(decodeHeader(corrupted).kind, 'invalid');
  });
});
