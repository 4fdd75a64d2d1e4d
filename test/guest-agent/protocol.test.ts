import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeExecStatus, encodeRequest, ReplyReader, SYNC_DELIMITER } from '../../src/guest-agent/protocol.js';

describe('guest agent protocol', () => {
  it('encodes a request as one JSON line', () => {
    assert.equal(new TextDecoder().decode(encodeRequest('guest-exec-status', { pid: 7 })), '{"execute":"guest-exec-status","arguments":{"pid":7}}\n');
  });

  it('reads replies split anywhere, and drops a half line before the sync delimiter', () => {
    const reader = new ReplyReader();
    assert.deepEqual(reader.push(new TextEncoder().encode('{"return": {"pi')), []);
    const after = reader.push(Uint8Array.from([SYNC_DELIMITER, ...new TextEncoder().encode('{"return": 42}\n{"error": {"class": "GenericError", "desc": "no such pid"}}\n')]));
    assert.deepEqual(after, [
      { kind: 'return', value: 42 },
      { kind: 'error', errorClass: 'GenericError', description: 'no such pid' },
    ]);
  });

  it('yields the same replies however the bytes are chunked (fuzzed)', () => {
    const stream = new TextEncoder().encode('{"return": 1}\n\xff{"return": {"pid": 3}}\n{"return": {}}\n'.replace('\xff', ''));
    const whole = new ReplyReader().push(stream);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: stream.length }), { maxLength: 8 }), (cuts) => {
        const reader = new ReplyReader();
        const points = [0, ...[...cuts].sort((a, b) => a - b), stream.length];
        const replies = points.slice(1).flatMap((end, index) => reader.push(stream.subarray(points[index], end)));
        assert.deepEqual(replies, whole);
      }),
    );
  });

  it('never throws on garbage (fuzzed)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        for (const reply of new ReplyReader().push(bytes)) assert.ok(['return', 'error', 'garbage'].includes(reply.kind));
      }),
    );
  });

  it('decodes an exited command with its output', () => {
    const status = decodeExecStatus({ exited: true, exitcode: 5, 'out-data': Buffer.from('out\n').toString('base64'), 'err-data': Buffer.from('refused').toString('base64') });
    assert.deepEqual(status, { exited: true, exitCode: 5, signal: undefined, stdout: 'out\n', stderr: 'refused', truncated: false });
    assert.throws(() => decodeExecStatus({ exited: 'yes' }));
  });
});
