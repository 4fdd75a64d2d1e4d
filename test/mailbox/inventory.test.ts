import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BLOCK_BYTES } from '../../src/mailbox/format.js';
import { decodeInventory, encodeInventory, incomingView, inventoryHolds, MAX_INCOMING_VIEWS, MAX_INVENTORY_ENTRIES } from '../../src/mailbox/inventory.js';

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

  it('carries the size the host sees each incoming volume at, beside a full list of active volumes', () => {
    const many = Array.from({ length: MAX_INVENTORY_ENTRIES }, (_, index) => `vm${index}-vda`);
    const views = new Map(Array.from({ length: MAX_INCOMING_VIEWS }, (_, index) => [`vm${index}-vda`, (index + 1) * 2 ** 40] as const));
    const decoded = decodeInventory(encodeInventory(2, 3, many, views), 2);
    assert.ok(decoded.kind === 'valid');
    assert.equal(decoded.value.overflow, false);
    assert.equal(incomingView(decoded.value, 'vm0-vda'), 2 ** 40);
    assert.equal(incomingView(decoded.value, `vm${MAX_INCOMING_VIEWS - 1}-vda`), MAX_INCOMING_VIEWS * 2 ** 40);
    assert.equal(incomingView(decoded.value, `vm${MAX_INCOMING_VIEWS}-vda`), undefined);
    for (const volume of many) assert.ok(inventoryHolds(decoded.value, volume), volume);
    assert.throws(() => encodeInventory(2, 3, [], new Map([['a', -1]])), /incoming view of a/);
    const tooMany = new Map(Array.from({ length: MAX_INCOMING_VIEWS + 1 }, (_, index) => [`v${index}`, 1] as const));
    assert.throws(() => encodeInventory(2, 3, [], tooMany), /incoming views/);
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
      fc.property(fc.array(fc.stringMatching(/^[A-Za-z0-9_+][A-Za-z0-9_.+-]{0,40}$/), { maxLength: 40 }), fc.nat(), fc.nat({ max: MAX_INCOMING_VIEWS }), (names, heartbeat, viewCount) => {
        const views = new Map(names.slice(0, viewCount).map((name, index) => [name, index * 4096] as const));
        const decoded = decodeInventory(encodeInventory(9, heartbeat, names, views), 9);
        assert.ok(decoded.kind === 'valid' && decoded.value.heartbeat === heartbeat);
        for (const name of names) assert.ok(inventoryHolds(decoded.value, name));
        for (const [name, bytes] of views) assert.equal(incomingView(decoded.value, name), bytes);
      }),
    );
    fc.assert(fc.property(fc.uint8Array({ minLength: BLOCK_BYTES, maxLength: BLOCK_BYTES }), (bytes) => void decodeInventory(bytes, 1)));
  });
});
