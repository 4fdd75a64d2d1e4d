import assert from 'node:assert/strict';
import fc from 'fast-check';
import { encodeCommand, parseLine, QmpDecoder, LineSplitter } from '../../src/qmp/framing.js';

const encoder = new TextEncoder();
const GREETING = '{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7"}, "capabilities": ["oob"]}}';
const EVENT = '{"timestamp": {"seconds": 1700000000, "microseconds": 250}, "event": "BLOCK_WRITE_THRESHOLD", "data": {"node-name": "vda-storage", "amount-exceeded": 4096, "write-threshold": 1048576}}';

describe('QMP framing', () => {
  it('parses the greeting, replies, errors and events into typed messages', () => {
    const greeting = parseLine(GREETING);
    assert.equal(greeting.kind, 'greeting');
    assert.equal(greeting.kind === 'greeting' && greeting.version.qemu.major, 7);
    assert.deepEqual(parseLine('{"return": {}, "id": "tideline-1"}'), { kind: 'return', id: 'tideline-1', value: {} });
    assert.deepEqual(parseLine('{"error": {"class": "GenericError", "desc": "Node \'x\' not found"}, "id": "tideline-2"}'), {
      kind: 'error',
      id: 'tideline-2',
      errorClass: 'GenericError',
      description: "Node 'x' not found",
    });
    const event = parseLine(EVENT);
    assert.equal(event.kind, 'event');
    assert.equal(event.kind === 'event' && event.timestampMicros, 1_700_000_000_000_250);
    assert.deepEqual(event.kind === 'event' && event.data['amount-exceeded'], 4096);
  });

  it('reports garbage with a reason instead of throwing', () => {
    for (const line of ['not json', '[1,2]', '42', 'null', '{"something": "else"}', '{"QMP": 3}', '{"error": "x"}', '{"retu']) {
      const parsed = parseLine(line);
      assert.equal(parsed.kind, 'garbage', line);
    }
  });

  it('assembles a message split across chunks at any byte', () => {
    const bytes = encoder.encode(`${EVENT}\r\n`);
    for (let cut = 1; cut < bytes.length; cut += 7) {
      const decoder = new QmpDecoder();
      assert.deepEqual(decoder.push(bytes.subarray(0, cut)), []);
      const messages = decoder.push(bytes.subarray(cut));
      assert.equal(messages.length, 1);
      assert.equal(messages[0]!.kind, 'event');
    }
  });

  it('yields every message of a chunk that holds many, garbage lines in between skipped', () => {
    const decoder = new QmpDecoder();
    const chunk = encoder.encode(`${GREETING}\r\n{"return": {}, "id": "a"}\r\nGARBAGE\r\n\r\n${EVENT}\r\n{"return": 1, "id": "b"}\r\n`);
    assert.deepEqual(decoder.push(chunk).map((message) => message.kind), ['greeting', 'return', 'garbage', 'event', 'return']);
  });

  it('drops an endless line instead of growing without bound', () => {
    const splitter = new LineSplitter(1024);
    const { overflowed } = splitter.push(new Uint8Array(2048).fill(0x41));
    assert.equal(overflowed, true);
    assert.deepEqual(splitter.push(encoder.encode('{"return": {}}\n')).lines, ['{"return": {}}']);
  });

  it('encodes commands as one CRLF-terminated JSON line with the id', () => {
    const text = new TextDecoder().decode(encodeCommand('block-set-write-threshold', { 'node-name': 'n', 'write-threshold': 5 }, 'tideline-9'));
    assert.ok(text.endsWith('\r\n'));
    assert.deepEqual(JSON.parse(text), { execute: 'block-set-write-threshold', id: 'tideline-9', arguments: { 'node-name': 'n', 'write-threshold': 5 } });
  });

  it('property: any chunking of a message stream yields the same messages', () => {
    const message = fc.oneof(
      fc.record({ return: fc.jsonValue(), id: fc.string() }),
      fc.record({ event: fc.string({ minLength: 1 }), data: fc.dictionary(fc.string(), fc.jsonValue()), timestamp: fc.record({ seconds: fc.nat(), microseconds: fc.nat(999_999) }) }),
    );
    fc.assert(
      fc.property(fc.array(message, { maxLength: 20 }), fc.array(fc.nat(), { maxLength: 30 }), (messages, cuts) => {
        const bytes = encoder.encode(messages.map((entry) => `${JSON.stringify(entry)}\r\n`).join(''));
        const whole = new QmpDecoder().push(bytes);
        const decoder = new QmpDecoder();
        const points = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b);
        const pieces: unknown[] = [];
        let start = 0;
        for (const point of [...points, bytes.length]) {
          pieces.push(...decoder.push(bytes.subarray(start, point)));
          start = point;
        }
        assert.deepEqual(pieces, whole);
        assert.equal(whole.length, messages.length);
      }),
    );
  });

  it('property: arbitrary bytes never throw, and every line is accounted for', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 4096 }), (bytes) => {
        const decoder = new QmpDecoder();
        decoder.push(bytes);
        decoder.push(encoder.encode('\n'));
      }),
    );
  });
});
