import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeRing, encodeRing, RING_BYTES, RING_CHECKSUM_OFFSET } from '../../src/doorbell/ring-format.js';
import { sealBlock } from '../../src/mailbox/format.js';

const MAILBOX_ID = '1b4e28ba-2fa1-11d2-883f-0016d3cca427';
const uuid = fc.uuid();

/** The ring with its CRC recomputed after a change, so that only the changed field can make it invalid. */
function resealed(datagram: Buffer): Buffer {
  return sealBlock(datagram, RING_CHECKSUM_OFFSET);
}

describe('doorbell ring format', () => {
  it('round-trips any host id of the mailbox and any mailbox id', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2000 }), uuid, (hostId, mailboxId) => {
        const decoded = decodeRing(encodeRing({ hostId, mailboxId }), 2000);
        assert.deepEqual(decoded, { kind: 'valid', value: { hostId, mailboxId } });
      }),
    );
  });

  it(`is ${RING_BYTES} bytes, one datagram`, () => {
    assert.equal(encodeRing({ hostId: 3, mailboxId: MAILBOX_ID }).length, RING_BYTES);
  });

  it('refuses what is not a ring of this format, saying why', () => {
    const ring = () => encodeRing({ hostId: 3, mailboxId: MAILBOX_ID });
    const cases: Array<[string, Buffer, string]> = [
      ['a short datagram', ring().subarray(0, 20), 'bad-size'],
      ['a long one', Buffer.concat([ring(), Buffer.alloc(4)]), 'bad-size'],
      ['another magic', resealed(Buffer.concat([Buffer.from('XXXX'), ring().subarray(4)])), 'bad-magic'],
      ['a flipped bit', (() => { const bytes = ring(); bytes[10]! ^= 1; return bytes; })(), 'bad-checksum'],
      ['a newer version', resealed((() => { const bytes = ring(); bytes.writeUInt16LE(2, 4); return bytes; })()), 'foreign-version'],
      ['host 0', resealed((() => { const bytes = ring(); bytes.writeUInt16LE(0, 6); return bytes; })()), 'wrong-host'],
    ];
    for (const [what, datagram, reason] of cases) {
      const decoded = decodeRing(datagram, 250);
      assert.equal(decoded.kind, 'invalid', what);
      assert.equal(decoded.kind === 'invalid' && decoded.reason, reason, what);
    }
  });

  it("refuses a host id beyond this mailbox's hosts", () => {
    const decoded = decodeRing(encodeRing({ hostId: 9, mailboxId: MAILBOX_ID }), 8);
    assert.deepEqual(decoded.kind === 'invalid' && [decoded.reason, decoded.detail], ['wrong-host', "host id 9 is outside this mailbox's 1..8"]);
  });

  it('never throws on any bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => ['valid', 'invalid'].includes(decodeRing(bytes, 250).kind)));
  });

  it('will not encode a host id or mailbox id that could not be read back', () => {
    assert.throws(() => encodeRing({ hostId: 0, mailboxId: MAILBOX_ID }), RangeError);
    assert.throws(() => encodeRing({ hostId: 3, mailboxId: 'not-a-uuid' }), /not a UUID/);
  });
});
