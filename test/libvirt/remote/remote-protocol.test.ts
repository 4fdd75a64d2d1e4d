import assert from 'node:assert/strict';
import fc from 'fast-check';
import { describeDomainState } from '../../../src/libvirt/remote/domain-state.js';
import { decodeAuthList, decodeDomain, decodeGetAllDomainStats, decodeGetDiskErrors, decodeGetJobStats, decodeGetMetadata, encodeConnectOpen, encodeGetBlockStats, encodeGetJobStats, encodeGetMetadata, encodeLookupByName, encodeSetBlockThreshold, isOutgoingMigration, JOB_OPERATION_MIGRATION_OUT, Procedure } from '../../../src/libvirt/remote/procedures.js';
import { blockStatsFromFields } from '../../../src/libvirt/domain-facts.js';
import { decodeRemoteError, encodeCall, MESSAGE_MAX_BYTES, REMOTE_PROGRAM, takeMessages } from '../../../src/libvirt/remote/rpc-message.js';
import { localEndpointFor } from '../../../src/libvirt/remote/socket-path.js';
import { XdrDecodeError, XdrReader, XdrWriter } from '../../../src/libvirt/remote/xdr.js';
import { domainBody, errorBody, replyFrame } from './fake-libvirtd.js';

const hex = (bytes: Buffer) => bytes.toString('hex');

describe('libvirt remote protocol: XDR', () => {
  it('writes words big-endian and pads strings to four bytes', () => {
    assert.equal(hex(new XdrWriter().int(-2).uint(0x20008086).bytes()), 'fffffffe20008086');
    assert.equal(hex(new XdrWriter().string('web').bytes()), '00000003' + '77656200');
    assert.equal(hex(new XdrWriter().string('vda1').bytes()), '00000004' + '76646131');
    assert.equal(hex(new XdrWriter().optionalString(undefined).optionalString('').bytes()), '00000000' + '00000001' + '00000000');
  });

  it('reads back what it writes, for any text', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 60 }), fc.option(fc.string(), { nil: undefined }), fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), (text, optional, number) => {
        const reader = new XdrReader(new XdrWriter().string(text).optionalString(optional).int(number).bytes());
        assert.deepEqual([reader.string(), reader.optionalString(), reader.int(), reader.remaining], [text, optional, number, 0]);
      }),
    );
  });

  it('refuses a truncated value, a string over libvirt\'s limit, and a boolean that is neither 0 nor 1', () => {
    assert.throws(() => new XdrReader(Buffer.from('000000', 'hex')).int(), /ends inside an int/);
    assert.throws(() => new XdrReader(Buffer.from('0000000577656200', 'hex')).string(), /ends inside a string/);
    assert.throws(() => new XdrReader(new XdrWriter().uint(4_194_305).bytes()).string(), /more than libvirt's limit/);
    assert.throws(() => new XdrReader(new XdrWriter().uint(2).bytes()).optionalString(), (error: unknown) => error instanceof XdrDecodeError && /2 where a boolean/.test(error.message));
  });
});

describe('libvirt remote protocol: messages', () => {
  it('frames a call: total length, program, version, procedure, call, serial, ok', () => {
    const call = encodeCall(Procedure.domainLookupByName, 7, encodeLookupByName('web'));
    assert.equal(hex(call), '00000024' + '20008086' + '00000001' + '00000017' + '00000000' + '00000007' + '00000000' + '00000003' + '77656200');
  });

  it('splits a stream into messages wherever the chunks end', () => {
    const stream = Buffer.concat([replyFrame(1, 1, Buffer.alloc(0)), replyFrame(23, 2, domainBody('web', 4)), replyFrame(265, 3, new XdrWriter().string('<thin/>').bytes())]);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: stream.length }), { maxLength: 6 }), (cuts) => {
        const points = [...new Set(cuts)].sort((a, b) => a - b);
        let pending: Buffer = Buffer.alloc(0);
        const serials: number[] = [];
        for (const [index, end] of [...points, stream.length].entries()) {
          const start = index === 0 ? 0 : points[index - 1]!;
          const { messages, rest } = takeMessages(Buffer.concat([pending, stream.subarray(start, end)]));
          serials.push(...messages.map((message) => message.header.serial));
          pending = rest;
        }
        assert.deepEqual(serials, [1, 2, 3]);
        assert.equal(pending.length, 0);
      }),
    );
    const [, lookup] = takeMessages(stream).messages;
    assert.deepEqual(lookup!.header, { program: REMOTE_PROGRAM, version: 1, procedure: 23, type: 1, serial: 2, status: 0 });
    assert.deepEqual(decodeDomain(lookup!.body), { name: 'web', uuid: Buffer.alloc(16, 7), id: 4 });
  });

  it('refuses a length word no libvirt message has, naming it', () => {
    assert.throws(() => takeMessages(Buffer.from('HTTP/1.1 400 Bad Request\r\n')), /message length of 1213486160 bytes.*does not speak libvirt's RPC/);
    assert.throws(() => takeMessages(new XdrWriter().uint(8).bytes()), /message length of 8 bytes/);
    assert.throws(() => takeMessages(new XdrWriter().uint(MESSAGE_MAX_BYTES + 1).bytes()), XdrDecodeError);
  });

  it('reads libvirt\'s error: code, message; a missing message is named by its code', () => {
    assert.deepEqual(decodeRemoteError(errorBody(42, "Domain not found: no domain with matching name 'x'")), { code: 42, domain: 10, message: "Domain not found: no domain with matching name 'x'", level: 2 });
    assert.equal(decodeRemoteError(errorBody(80, undefined)).message, 'libvirt error 80');
  });
});

describe('libvirt remote protocol: the calls tideline makes', () => {
  const web = { name: 'web', uuid: Buffer.alloc(16, 1), id: 3 };

  it('asks for a metadata element by namespace on the current definition', () => {
    const reader = new XdrReader(encodeGetMetadata(web, 'https://tideline.dev/xmlns/policy/1'));
    assert.deepEqual([reader.string(), reader.fixedOpaque(16), reader.int(), reader.int(), reader.optionalString(), reader.uint(), reader.remaining], ['web', web.uuid, 3, 2, 'https://tideline.dev/xmlns/policy/1', 0, 0]);
    assert.equal(decodeGetMetadata(new XdrWriter().string('<tl:thin/>').bytes()), '<tl:thin/>');
    assert.equal(hex(encodeConnectOpen('qemu:///system')).slice(0, 16), '000000010000000e');
    assert.equal(encodeGetJobStats(web).length, 4 + 4 + 16 + 4 + 4);
  });

  it('reads job statistics of every typed-parameter type, and knows an outgoing migration', () => {
    const body = new XdrWriter()
      .int(2)
      .uint(5)
      .string('operation').int(1).int(JOB_OPERATION_MIGRATION_OUT)
      .string('time_elapsed').int(4).uint(0).uint(1500)
      .string('compression_rate').int(5).fixedOpaque(Buffer.from('3ff8000000000000', 'hex'))
      .string('auto_converge').int(6).int(1)
      .string('error').int(7).string('none')
      .bytes();
    const stats = decodeGetJobStats(body);
    assert.deepEqual([...stats.fields], [['operation', 5], ['time_elapsed', 1500], ['compression_rate', 1.5], ['auto_converge', true], ['error', 'none']]);
    assert.equal(isOutgoingMigration(stats), true);
    assert.equal(isOutgoingMigration({ type: 0, fields: new Map([['operation', 5]]) }), false, 'no job runs');
    assert.equal(isOutgoingMigration({ type: 2, fields: new Map([['operation', 4]]) }), false, 'an incoming migration');
    assert.throws(() => decodeGetJobStats(new XdrWriter().int(2).uint(1).string('x').int(9).bytes()), /'x' has type 9/);
    assert.throws(() => decodeGetJobStats(new XdrWriter().int(2).uint(65).bytes()), /65 job statistics, more than the protocol's limit of 64/);
    assert.deepEqual(decodeAuthList(new XdrWriter().uint(2).int(2).int(0).bytes()), [2, 0]);
  });
});

describe('libvirt remote protocol: what the agent asks at every poll', () => {
  const web = { name: 'web', uuid: Buffer.alloc(16, 1), id: 3 };

  it('names states and reasons in virsh\'s words, and unknown numbers as virsh does', () => {
    assert.deepEqual(describeDomainState(3, 5), { state: 'paused', reason: 'I/O error' });
    assert.deepEqual(describeDomainState(3, 11), { state: 'paused', reason: 'starting up' });
    assert.deepEqual(describeDomainState(3, 2), { state: 'paused', reason: 'migrating' });
    assert.deepEqual(describeDomainState(1, 5), { state: 'running', reason: 'unpaused' });
    assert.deepEqual(describeDomainState(5, 2), { state: 'shut off', reason: 'destroyed' });
    assert.deepEqual(describeDomainState(3, 99), { state: 'paused', reason: 'unknown' });
    assert.deepEqual(describeDomainState(42, 0), { state: 'no state', reason: 'unknown' });
  });

  it('writes a threshold above 4 GiB as an unsigned hyper', () => {
    const reader = new XdrReader(encodeSetBlockThreshold(web, 'vda[1]', 5 * 2 ** 32 + 7));
    assert.deepEqual([reader.string(), reader.fixedOpaque(16).length, reader.int(), reader.string(), reader.unsignedHyper(), reader.uint(), reader.remaining], ['web', 16, 3, 'vda[1]', 5 * 2 ** 32 + 7, 0, 0]);
  });

  it('reads block statistics records into the fields virsh prints', () => {
    const reader = new XdrReader(encodeGetBlockStats(web));
    assert.deepEqual([reader.uint(), reader.string()], [1, 'web']);
    const field = (writer: XdrWriter, name: string, type: number, value: (writer: XdrWriter) => XdrWriter) => value(writer.string(name).int(type));
    let body = new XdrWriter().uint(1).string('web').fixedOpaque(Buffer.alloc(16)).int(3).uint(5);
    body = field(body, 'block.count', 2, (writer) => writer.uint(1));
    body = field(body, 'block.0.name', 7, (writer) => writer.string('vda'));
    body = field(body, 'block.0.backingIndex', 2, (writer) => writer.uint(1));
    body = field(body, 'block.0.allocation', 4, (writer) => writer.uint(1).uint(0));
    body = field(body, 'block.0.threshold', 4, (writer) => writer.uint(0).uint(50_331_648));
    const fields = decodeGetAllDomainStats(body.bytes());
    assert.deepEqual(blockStatsFromFields(fields), [{ target: 'vda', path: undefined, backingIndex: 1, allocation: 2 ** 32, physical: 0, capacity: 0, threshold: 50_331_648 }]);
  });

  it('reads disk errors in virsh\'s words', () => {
    const body = new XdrWriter().uint(3).string('vda').int(2).string('vdb').int(1).string('vdc').int(0).int(3).bytes();
    assert.deepEqual([...decodeGetDiskErrors(body)], [['vda', 'no space'], ['vdb', 'unspecified error'], ['vdc', 'no error']]);
    assert.throws(() => decodeGetDiskErrors(new XdrWriter().uint(257).bytes()), /257 disk errors/);
  });
});

describe('libvirt remote protocol: which socket serves a URI', () => {
  const existing = (...paths: string[]) => (path: string) => paths.includes(path);

  it('prefers the per-driver daemon, as libvirt\'s client does, then libvirtd', () => {
    assert.deepEqual(localEndpointFor('qemu:///system', existing('/run/libvirt/virtqemud-sock', '/run/libvirt/libvirt-sock')), { socket: '/run/libvirt/virtqemud-sock', name: 'qemu:///system' });
    assert.deepEqual(localEndpointFor('qemu:///system', existing('/run/libvirt/libvirt-sock')), { socket: '/run/libvirt/libvirt-sock', name: 'qemu:///system' });
    assert.deepEqual(localEndpointFor('qemu+unix:///system', existing('/run/libvirt/libvirt-sock')), { socket: '/run/libvirt/libvirt-sock', name: 'qemu:///system' });
    assert.equal(localEndpointFor('qemu:///system', existing()), undefined);
  });

  it('takes a socket named in the URI, and leaves every other URI to virsh', () => {
    assert.deepEqual(localEndpointFor('qemu+unix:///system?socket=/srv/host-a/libvirt-sock', existing()), { socket: '/srv/host-a/libvirt-sock', name: 'qemu:///system' });
    for (const uri of ['qemu+ssh://root@host-b/system', 'qemu:///session', 'test:///default', 'qemu+unix:///system?socket=/s&mode=legacy', 'qemu+unix://host-b/system', 'qemu+tls://host-b/system', 'not a uri', 'qemu:///system?mode=direct']) {
      assert.equal(localEndpointFor(uri, existing('/run/libvirt/libvirt-sock')), undefined, uri);
    }
  });
});
