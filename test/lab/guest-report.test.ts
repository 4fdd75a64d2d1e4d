import assert from 'node:assert/strict';
import { parseGuestLine } from '../../src/lab/guest-report.js';

describe('lab guest console lines', () => {
  it('reads the guest\'s reports and ignores kernel messages', () => {
    assert.deepEqual(parseGuestLine('TIDELINE ready units=64 unit_mib=16'), { kind: 'ready', units: 64 });
    assert.deepEqual(parseGuestLine('TIDELINE progress written_mib=256'), { kind: 'progress', writtenMib: 256, disk: 'vda' });
    assert.deepEqual(parseGuestLine('TIDELINE progress written_mib=64 disk=vdb'), { kind: 'progress', writtenMib: 64, disk: 'vdb' });
    assert.deepEqual(parseGuestLine('TIDELINE waiting-for-growth disk=vda bytes=268435456'), { kind: 'waiting-for-growth', disk: 'vda', bytes: 268435456 });
    assert.deepEqual(parseGuestLine('TIDELINE done'), { kind: 'done' });
    assert.deepEqual(parseGuestLine('TIDELINE written centiseconds=447'), { kind: 'written', seconds: 4.47 });
    assert.deepEqual(parseGuestLine('TIDELINE mismatch unit=3 part=body'), { kind: 'mismatch', unit: 3, part: 'body' });
    assert.deepEqual(parseGuestLine('TIDELINE result units=64 bad=0 body_md5=70f9'), { kind: 'result', units: 64, bad: 0, bodyMd5: '70f9', disk: 'vda' });
    assert.deepEqual(parseGuestLine('TIDELINE error no-disk'), { kind: 'error', detail: 'no-disk' });
    assert.equal(parseGuestLine('[    2.310056] virtio_blk virtio1: [vda] 8388608 512-byte logical blocks'), undefined);
    assert.equal(parseGuestLine('TIDELINE something-new'), undefined);
  });
});
