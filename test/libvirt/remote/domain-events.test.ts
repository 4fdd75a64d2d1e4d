import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseEventLine } from '../../../src/libvirt/events.js';
import { decodeDomainEvent, DomainEventId, encodeEventRegister, EventProcedure, FOLLOWED_EVENT_IDS } from '../../../src/libvirt/remote/domain-events.js';
import { XdrDecodeError, XdrWriter } from '../../../src/libvirt/remote/xdr.js';
import { domainBody } from './fake-libvirtd.js';

/** A callback event's body: its callback id, then the domain, then the rest. */
function event(build: (writer: XdrWriter) => XdrWriter, domain = 'web01'): Buffer {
  return Buffer.concat([new XdrWriter().int(7).bytes(), domainBody(domain, 3), build(new XdrWriter()).bytes()]);
}

describe("libvirt's domain events over its RPC", () => {
  it('reads each event the agent follows as the same value the `virsh event` line gives', () => {
    // Each pair: the message libvirtd sends, and the line virsh prints for the same event (checked against a real libvirtd in libvirt-direct.test.ts).
    const pairs: Array<[number, Buffer, string]> = [
      [EventProcedure.lifecycle, event((w) => w.int(3).int(2)), "event 'lifecycle' for domain 'web01': Suspended I/O Error"],
      [EventProcedure.lifecycle, event((w) => w.int(2).int(1)), "event 'lifecycle' for domain 'web01': Started Migrated"],
      [EventProcedure.lifecycle, event((w) => w.int(4).int(1)), "event 'lifecycle' for domain 'web01': Resumed Migrated"],
      [EventProcedure.lifecycle, event((w) => w.int(5).int(3)), "event 'lifecycle' for domain 'web01': Stopped Migrated"],
      [EventProcedure.lifecycle, event((w) => w.int(2).int(2)), "event 'lifecycle' for domain 'web01': Started Restored"],
      [EventProcedure.ioErrorReason, event((w) => w.string('/dev/loop0').string('virtio-disk0').int(1).string('enospc')), "event 'io-error-reason' for domain 'web01': /dev/loop0 (virtio-disk0) pause due to enospc"],
      [EventProcedure.blockThreshold, event((w) => w.string('vda[1]').uint(1).string('/dev/loop0').uint(0).uint(50_000_000).uint(0).uint(659_328)), "event 'block-threshold' for domain 'web01': dev: vda[1](/dev/loop0) 50000000 659328"],
    ];
    for (const [procedure, body, line] of pairs) assert.deepEqual(decodeDomainEvent(procedure, body), parseEventLine(line), line);
  });

  it('names device, block job, metadata and migration events, which tell the agent to reconcile the domain', () => {
    assert.deepEqual(decodeDomainEvent(EventProcedure.deviceAdded, event((w) => w.string('virtio-disk1'))), { kind: 'other', domain: 'web01', name: 'device-added', detail: 'virtio-disk1' });
    assert.deepEqual(decodeDomainEvent(EventProcedure.deviceRemoved, event((w) => w.string('virtio-disk1'))), { kind: 'other', domain: 'web01', name: 'device-removed', detail: 'virtio-disk1' });
    assert.deepEqual(decodeDomainEvent(EventProcedure.blockJob2, event((w) => w.string('vda').int(4).int(0))), { kind: 'other', domain: 'web01', name: 'block-job-2', detail: 'Active Block Commit for vda completed' });
    assert.deepEqual(decodeDomainEvent(EventProcedure.metadataChange, event((w) => w.int(2).uint(1).string('https://tideline.dev/xmlns/policy/1'))), { kind: 'other', domain: 'web01', name: 'metadata-change', detail: 'type 2 https://tideline.dev/xmlns/policy/1' });
    assert.deepEqual(decodeDomainEvent(EventProcedure.migrationIteration, event((w) => w.int(3))), { kind: 'other', domain: 'web01', name: 'migration-iteration', detail: "iteration: '3'" });
    assert.equal(decodeDomainEvent(EventProcedure.jobCompleted, event((w) => w.uint(0)))?.kind, 'other');
    assert.equal(decodeDomainEvent(EventProcedure.deviceAdded, event((w) => w.string('x'), 'a name with spaces'))?.domain, 'a name with spaces');
    assert.equal(decodeDomainEvent(319, event((w) => w)), undefined, 'a reboot is no event the agent follows');
  });

  it('registers one callback per followed kind, for every domain', () => {
    assert.ok(FOLLOWED_EVENT_IDS.includes(DomainEventId.deviceAdded) && FOLLOWED_EVENT_IDS.includes(DomainEventId.blockThreshold));
    assert.deepEqual([...encodeEventRegister(DomainEventId.blockThreshold)], [0, 0, 0, 24, 0, 0, 0, 0]);
  });

  it('refuses a body cut short, and never throws anything but an XDR error whatever the bytes', () => {
    assert.throws(() => decodeDomainEvent(EventProcedure.lifecycle, event((w) => w.int(3)).subarray(0, 20)), XdrDecodeError);
    const procedures = Object.values(EventProcedure);
    fc.assert(
      fc.property(fc.constantFrom(...procedures), fc.uint8Array({ maxLength: 120 }), (procedure, bytes) => {
        try {
          decodeDomainEvent(procedure, Buffer.from(bytes));
        } catch (error) {
          if (!(error instanceof XdrDecodeError)) throw error;
        }
      }),
    );
  });
});
