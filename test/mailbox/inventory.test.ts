import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BLOCK_BYTES } from '../../src/mailbox/format.js';
import { decodeInventory, encodeInventory, inventoryHolds, MAX_INVENTORY_ENTRIES } from '../../src/mailbox/inventory.js';

describe('host inventory block', () => {
  it('says which volumes a host has active, and nothing else', () => {
    const decoded = decodeInventory(encodeInventory(3, 17, ['web01-vda', 'web01-vda-snap1', 'centos9']), 3);
    assert.ok(decoded.kind === 'valid');
    assert.equal(decoded.value.heartbeat, 17);
    assert.equal(decoded.value.overflow, false);
    for (const volume of ['web01-vda', 'web01-vda-snap1', 'centos9']) assert.ok(inventoryHolds(decoded.value, volume), volume);
    assert.equal(inventoryHolds(decoded.value, 'db01-vda'), false);
    assert.deepEqual(decodeInventory(Buffer.alloc(BLOCK_BYTES), 3), { kind: 'empty' });
  });

  it('sets the overflow flag past what a block holds: then every volume counts as possibly active there', () => {
    const many = Array.from({ length: MAX_INVENTORY_ENTRIES + 1 }, (_, index) => `vm${index}-vda`);
    const decoded = decodeInventory(encodeInventory(1, 1, many), 1);
    assert.ok(decoded.kind === 'valid' && decoded.value.overflow);
    assert.ok(inventoryHolds(decoded.value, 'never-listed'));
  });

  it("rejects another host's block, a torn block, and a count that does not fit", () => {
    const block = encodeInventory(2, 5, ['a']);
    assert.equal((decodeInventory(block, 3) as { reason: string }).reason, 'wrong-host');
    const torn = Buffer.from(block);
    torn[70] = torn[70]! ^ 0xff;
    assert.equal((decodeInventory(torn, 2) as { reason: string }).reason, 'bad-checksum');
  });

  it('property: any set of names comes back held; arbitrary bytes never throw', () => {
    fc.assert(
      fc.property(fc.array(fc.stringMatching(/^[A-Za-z0-9_+][A-Za-z0-9_.+-]{0,40}$/), { maxLength: 40 }), fc.nat(), (names, heartbeat) => {
        const decoded = decodeInventory(encodeInventory(9, heartbeat, names), 9);
        assert.ok(decoded.kind === 'valid' && decoded.value.heartbeat === heartbeat);
        for (const name of names) assert.ok(inventoryHolds(decoded.value, name));
      }),
    );
    fc.assert(fc.property(fc.uint8Array({ minLength: BLOCK_BYTES, maxLength: BLOCK_BYTES }), (bytes) => void decodeInventory(bytes, 1)));
  });
});
