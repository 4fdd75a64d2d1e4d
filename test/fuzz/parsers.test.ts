import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeRing, encodeRing, RING_CHECKSUM_OFFSET } from '../../src/doorbell/ring-format.js';
import { assertVolumeName } from '../../plugins/errors.js';
import { decodeTags } from '../../plugins/lvm/lvm-plugin.js';
import { decodeControlRequest } from '../../src/agent/control-protocol.js';
import { parseHookEvent, parsePrepareRequest } from '../../src/agent/spool-protocol.js';
import { decodePrepareReply } from '../../src/hook/agent-prepare.js';
import { parseHostConfig } from '../../src/config/host-config.js';
import { parseListenAddress } from '../../src/config/listen-address.js';
import { TideError } from '../../src/errors.js';
import { parseReply } from '../../src/guest-agent/protocol.js';
import { decodeLeaseBlock, encodeLeaseBlock, LeaseState } from '../../src/lease/lease-block.js';
import { parseDomainXml, parsePolicyXml } from '../../src/libvirt/domain-xml.js';
import { parseEventLine } from '../../src/libvirt/events.js';
import { readPlainPolicy } from '../../src/libvirt/policy-reader.js';
import { decodeDomain, decodeGetAllDomainStats, decodeGetDiskErrors, decodeGetJobStats, decodeGetState } from '../../src/libvirt/remote/procedures.js';
import { decodeRemoteError, takeMessages } from '../../src/libvirt/remote/rpc-message.js';
import { decodeDomainEvent, EventProcedure } from '../../src/libvirt/remote/domain-events.js';
import { XdrWriter } from '../../src/libvirt/remote/xdr.js';
import { domainBody, errorBody, replyFrame } from '../libvirt/remote/fake-libvirtd.js';
import { parseBlockErrors, parseBlockStats, parseDomState } from '../../src/libvirt/virsh.js';
import { BLOCK_BYTES, FORMAT_VERSION, sealBlock, decodeHeader, decodeReplySlot, decodeRequestSlot, encodeHeader, encodeReplySlot, encodeRequestSlot, Operation } from '../../src/mailbox/format.js';
import { decodeInventory, encodeInventory } from '../../src/mailbox/inventory.js';
import { parseBitmapDirectory, parseQcow2Header } from '../../src/qcow2/header.js';
import { QmpDecoder } from '../../src/qmp/framing.js';
import { parseSize } from '../../src/util/sizes.js';

/**
 * Every parser of outside input against arbitrary and mutated input: it
 * answers (a value, an "invalid" result) or throws a TideError with a code,
 * never anything else. The suite runs 1,000 cases per parser;
 * `npm run fuzz` runs TIDELINE_FUZZ_RUNS (100,000) and prints the tally.
 */
const RUNS = Number(process.env.TIDELINE_FUZZ_RUNS ?? 1_000);
/** Where the on-disk formats keep their CRC32 (docs/mailbox-format.md). */
const MAILBOX_HEADER_CHECKSUM_OFFSET = 60;
const SLOT_CHECKSUM_OFFSET = 20;
const LEASE_CHECKSUM_OFFSET = 36;
const INVENTORY_CHECKSUM_OFFSET = 20;

/** A valid sample with up to eight edits: a character replaced, a span deleted, text inserted, a span repeated. */
function mutatedText(samples: readonly string[]): fc.Arbitrary<string> {
  const edit = fc.tuple(fc.nat(), fc.nat({ max: 40 }), fc.string({ unit: 'binary', maxLength: 12 }), fc.integer({ min: 0, max: 3 }));
  return fc.tuple(fc.constantFrom(...samples), fc.array(edit, { maxLength: 8 })).map(([sample, edits]) =>
    edits.reduce((text, [at, length, insert, kind]) => {
      const position = text.length === 0 ? 0 : at % text.length;
      if (kind === 0) return text.slice(0, position) + insert.slice(0, 1) + text.slice(position + 1);
      if (kind === 1) return text.slice(0, position) + text.slice(position + length);
      if (kind === 2) return text.slice(0, position) + insert + text.slice(position);
      return text.slice(0, position) + text.slice(position, position + length).repeat(2) + text.slice(position);
    }, sample),
  );
}

/** Arbitrary text, or a mutated valid sample (reaches further than random text ever does). */
function textInput(samples: readonly string[]): fc.Arbitrary<string> {
  return fc.oneof(fc.string({ unit: 'binary', maxLength: 400 }), mutatedText(samples));
}

/**
 * Random blocks, or a valid block with a few bytes changed; with
 * `checksumOffset`, also changed blocks sealed again with a correct CRC32, so
 * the decoder's checks past the checksum get exercised too.
 */
function blockInput(samples: readonly Uint8Array[], checksumOffset?: number): fc.Arbitrary<Uint8Array> {
  // Changes cluster near the start, where the fields are.
  const position = fc.oneof(fc.nat({ max: 256 }), fc.nat({ max: BLOCK_BYTES - 1 }));
  const changed = fc.tuple(fc.constantFrom(...samples), fc.array(fc.tuple(position, fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 })).map(([sample, edits]) => {
    const copy = Buffer.from(sample);
    for (const [at, value] of edits) copy[at % copy.length] = value;
    return copy;
  });
  const random = fc.uint8Array({ minLength: BLOCK_BYTES, maxLength: BLOCK_BYTES });
  if (checksumOffset === undefined) return fc.oneof(random, changed);
  const resealed = changed.map((block) => sealBlock(block, checksumOffset));
  return fc.oneof(random, changed, resealed);
}

interface Tally {
  cases: number;
  /** Read as valid input. */
  accepted: number;
  /** Refused by value: an "invalid" decode, an error object, nothing. */
  refused: number;
  /** Refused by a thrown TideError. */
  thrown: number;
}

function refusedByValue(result: unknown): boolean {
  if (result === undefined || result === 'invalid') return true;
  return typeof result === 'object' && result !== null && (('kind' in result && (result.kind === 'invalid' || result.kind === 'garbage')) || 'error' in result);
}

const tallies = new Map<string, Tally>();

/** Runs `parse` on each input; anything thrown must be a TideError with a code. */
function fuzz<T>(name: string, input: fc.Arbitrary<T>, parse: (value: T) => unknown): void {
  const tally: Tally = { cases: 0, accepted: 0, refused: 0, thrown: 0 };
  tallies.set(name, tally);
  fc.assert(
    fc.property(input, (value) => {
      tally.cases += 1;
      try {
        if (refusedByValue(parse(value))) tally.refused += 1;
        else tally.accepted += 1;
      } catch (error) {
        assert.ok(error instanceof TideError && typeof error.code === 'string' && error.code.length > 0, `${name} threw an untyped ${String(error)}`);
        tally.thrown += 1;
      }
    }),
    { numRuns: RUNS },
  );
}

const DOMAIN_XML = `<domain type='qemu' id='3'><name>web</name>
<metadata><tl:thin xmlns:tl="https://tideline.dev/xmlns/policy/1" chunk="256M" free-target="128M"><tl:drive target="vdb" enabled="no" max-size="10G"/></tl:thin></metadata>
<devices><disk type='block' device='disk'><driver name='qemu' type='qcow2' error_policy='stop'/><source dev='/dev/sd1/web-vda-2' index='3'/>
<backingStore type='block' index='2'><format type='qcow2'/><source dev='/dev/sd1/web-vda-1'/><backingStore/></backingStore>
<target dev='vda' bus='virtio'/></disk></devices></domain>`;

describe(`fuzzing every parser of outside input (${RUNS} cases each)`, function () {
  this.timeout(Math.max(60_000, RUNS * 20));

  after(() => {
    if (RUNS < 10_000) return;
    process.stdout.write('\n      parser                   cases  accepted  refused  typed error  crashes\n');
    for (const [name, tally] of tallies) {
      const cells = [tally.cases, tally.accepted, tally.refused, tally.thrown, 0].map((value, index) => String(value).padStart([7, 9, 8, 12, 8][index]!));
      process.stdout.write(`      ${name.padEnd(22)} ${cells.join(' ')}\n`);
    }
  });

  it('QMP: bytes in any chunking', () => {
    const greeting = '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": ["oob"]}}\r\n';
    const reply = '{"return": {"status": "running", "running": true}, "id": "tl-3"}\r\n{"event": "BLOCK_WRITE_THRESHOLD", "data": {"node-name": "vda-storage", "amount-exceeded": 512, "write-threshold": 1024}, "timestamp": {"seconds": 1, "microseconds": 2}}\r\n{"error": {"class": "GenericError", "desc": "no"}, "id": "tl-4"}\r\n';
    fuzz('qmp stream', fc.tuple(textInput([greeting, reply]), fc.array(fc.nat(), { maxLength: 6 })), ([text, cuts]) => {
      const bytes = Buffer.from(text, 'latin1');
      const decoder = new QmpDecoder(4096);
      const parsed = [];
      let start = 0;
      for (const cut of [...cuts.map((value) => value % (bytes.length + 1)).sort((a, b) => a - b), bytes.length]) {
        parsed.push(...decoder.push(bytes.subarray(start, Math.max(start, cut))));
        start = Math.max(start, cut);
      }
      // Accepted when any message came out whole.
      return parsed.some((message) => message.kind !== 'garbage') ? parsed : undefined;
    });
  });

  it('mailbox: header, request and reply slots', () => {
    const header = encodeHeader({ version: FORMAT_VERSION, maxHosts: 8, mailboxId: '1b4e28ba-2fa1-11d2-883f-0016d3cca427', createdAtMs: 1_790_000_000_000 });
    const request = encodeRequestSlot({ hostId: 2, generation: 7, messages: [{ sequence: 3, operation: Operation.CreateChild, volume: 'web-vda-2', parent: 'web-vda', targetBytes: 1 << 30, virtualBytes: 0 }, undefined, undefined, undefined, undefined, undefined, undefined, undefined] });
    const reply = encodeReplySlot({ hostId: 2, generation: 9, messages: [{ sequence: 3, status: 0, resultBytes: 1 << 30 }, undefined, undefined, undefined, undefined, undefined, undefined, undefined] });
    fuzz('mailbox header', blockInput([header], MAILBOX_HEADER_CHECKSUM_OFFSET), (block) => decodeHeader(block));
    fuzz('mailbox request slot', blockInput([request], SLOT_CHECKSUM_OFFSET), (block) => decodeRequestSlot(block, 2));
    fuzz('mailbox reply slot', blockInput([reply], SLOT_CHECKSUM_OFFSET), (block) => decodeReplySlot(block, 2));
  });

  it('host inventory blocks', () => {
    fuzz('inventory block', blockInput([encodeInventory(4, 99, ['web01-vda', 'centos9'])], INVENTORY_CHECKSUM_OFFSET), (block) => decodeInventory(block, 4));
  });

  it('doorbell rings (UDP datagrams from anyone)', () => {
    const ring = encodeRing({ hostId: 4, mailboxId: '1b4e28ba-2fa1-11d2-883f-0016d3cca427' });
    fuzz('doorbell ring', fc.oneof(fc.uint8Array({ maxLength: 64 }), blockInput([ring], RING_CHECKSUM_OFFSET)), (datagram) => decodeRing(datagram, 250));
  });

  it("libvirt's RPC replies (what a daemon, or whatever holds its socket, sends)", () => {
    const jobStats = new XdrWriter().int(2).uint(2).string('operation').int(1).int(5).string('error').int(7).string('none').bytes();
    const allStats = new XdrWriter().uint(1).string('web').fixedOpaque(Buffer.alloc(16)).int(3).uint(2).string('block.0.name').int(7).string('vda').string('block.0.allocation').int(4).uint(0).uint(4096).bytes();
    const diskErrors = new XdrWriter().uint(1).string('vda').int(2).int(1).bytes();
    const samples = [replyFrame(23, 3, domainBody('web', 4)), replyFrame(298, 4, jobStats), replyFrame(23, 5, errorBody(42, 'Domain not found'), { status: 1 }), replyFrame(344, 6, allStats), replyFrame(263, 7, diskErrors), replyFrame(212, 8, new XdrWriter().int(3).int(5).bytes())];
    const decoders: Record<number, (body: Buffer) => unknown> = { 23: decodeDomain, 298: decodeGetJobStats, 344: decodeGetAllDomainStats, 263: decodeGetDiskErrors, 212: decodeGetState };
    const decodeAll = (bytes: Uint8Array) =>
      takeMessages(Buffer.from(bytes)).messages.map(({ header, body }) => (header.status !== 0 ? decodeRemoteError(body) : (decoders[header.procedure] ?? decodeGetJobStats)(body)))[0];
    fuzz('libvirt RPC reply', fc.oneof(fc.uint8Array({ maxLength: 200 }), blockInput(samples)), decodeAll);
  });

  it("libvirt's domain events (unsolicited messages on the agent's event connection)", () => {
    const callback = (rest: XdrWriter) => Buffer.concat([new XdrWriter().int(1).bytes(), domainBody('web', 4), rest.bytes()]);
    const events: Array<[number, Buffer]> = [
      [EventProcedure.lifecycle, callback(new XdrWriter().int(3).int(2))],
      [EventProcedure.blockThreshold, callback(new XdrWriter().string('vda[1]').uint(1).string('/dev/loop0').uint(0).uint(4096).uint(0).uint(512))],
      [EventProcedure.ioErrorReason, callback(new XdrWriter().string('/dev/loop0').string('virtio-disk0').int(1).string('enospc'))],
      [EventProcedure.deviceAdded, callback(new XdrWriter().string('virtio-disk1'))],
    ];
    const samples = events.map(([procedure, body]) => Buffer.concat([new XdrWriter().int(procedure).bytes(), body]));
    fuzz('libvirt domain event', fc.oneof(fc.uint8Array({ maxLength: 200 }), blockInput(samples)), (bytes) => {
      const buffer = Buffer.from(bytes);
      if (buffer.length < 4) return undefined;
      return decodeDomainEvent(buffer.readInt32BE(0), buffer.subarray(4));
    });
  });

  it('lease blocks', () => {
    const holding = encodeLeaseBlock({ hostId: 3, state: LeaseState.Holding, heartbeat: 41, ballot: 2 });
    fuzz('lease block', blockInput([holding], LEASE_CHECKSUM_OFFSET), (block) => decodeLeaseBlock(block, 3));
  });

  it('qcow2 header and bitmap directory', () => {
    const header = Buffer.alloc(BLOCK_BYTES);
    header.write('QFI\xfb', 0, 'latin1');
    header.writeUInt32BE(3, 4);
    header.writeUInt32BE(16, 20);
    header.writeBigUInt64BE(1n << 32n, 24);
    header.writeUInt32BE(104, 100);
    fuzz('qcow2 header', blockInput([header]), (block) => parseQcow2Header(block, 'fuzz'));
    fuzz('qcow2 bitmap directory', fc.tuple(fc.uint8Array({ maxLength: 512 }), fc.integer({ min: 0, max: 20 })), ([bytes, count]) => parseBitmapDirectory(bytes, count, 'fuzz'));
  });

  it('libvirt: domain XML (the hook reads it on stdin), policy metadata, events, virsh output', () => {
    fuzz('domain XML', textInput([DOMAIN_XML]), (xml) => parseDomainXml(xml));
    const policySamples = ['<thin chunk="256M" free-target="64M"><drive target="vda" max-size="4G" enabled="yes"/></thin>', '<thin chunk="268435456">\n  <drive target="vdb" enabled="no"/>\n</thin>', ''];
    fuzz('policy metadata', textInput(policySamples), (xml) => parsePolicyXml(xml));
    // The plain reader never throws, and where it answers the full parser answers the same.
    fuzz('plain policy reader', textInput(policySamples), (xml) => {
      const plain = readPlainPolicy(xml);
      if (plain === undefined) return plain;
      let full;
      try {
        full = parsePolicyXml(xml);
      } catch (error) {
        assert.fail(`the plain reader read ${JSON.stringify(xml)}, which the full parser refuses: ${String(error)}`);
      }
      assert.deepEqual(plain, full);
      return plain;
    });
    fuzz('libvirt event line', textInput(["event 'lifecycle' for domain 'web': Suspended I/O Error", "event 'block-threshold' for domain 'web': dev: vda(/dev/sd1/web-vda) 1073741824 65536"]), (line) => parseEventLine(line));
    fuzz('virsh output', textInput(['paused (I/O error)\n', 'vda: no space\n', "Domain: 'web'\n  block.count=1\n  block.0.name=vda\n  block.0.allocation=134545408\n  block.0.physical=134217728\n"]), (text) => ({
      state: parseDomState(text),
      errors: parseBlockErrors(text),
      stats: parseBlockStats(text),
    }));
  });

  it('host configuration, sizes, listen addresses, volume names, LVM tags', () => {
    fuzz('config file', textInput(['# storage\nvg = sd1\nmailbox = /dev/sd1/mailbox\nhost-id = 3\nchunk = 1G\nfree-target=512M\nloop-view = 2\n']), (text) => parseHostConfig(text, '/etc/tideline/tideline.conf'));
    fuzz('size', textInput(['1G', '512M', '1.5T', '4096']), (text) => parseSize(text, '--chunk'));
    fuzz('listen address', textInput(['127.0.0.1:9471', '[::1]:9472']), (text) => parseListenAddress(text, '--metrics-listen'));
    fuzz('volume name', textInput(['web01-vda', 'tpl.centos_9']), (name) => {
      assertVolumeName(name);
      return name;
    });
    fuzz('lvm tags', textInput(['tideline.vm=web01,tideline.virtual-bytes=4294967296', '']), (text) => decodeTags(text));
  });

  it("agent inputs: control protocol, the agent's answer to the hook, hook spool events, guest agent replies", () => {
    fuzz('control request', textInput(['{"op":"create-child","volume":"web-vda-2","parent":"web-vda","sizeBytes":1073741824}', '{"op":"reduce","volume":"tpl","freeTargetBytes":0}', '{"op":"prepare-domain","domain":"web","xml":"<domain/>","loopDomain":"/srv/lab"}']), (line) => decodeControlRequest(line));
    fuzz("agent's prepare reply", textInput(['{"ok":true,"exitCode":0}', '{"ok":true,"exitCode":1,"message":"tideline: domain web cannot start"}', '{"ok":false,"code":"storage-domain-mismatch","message":"x"}']), (line) => decodePrepareReply(line));
    fuzz('hook spool event', textInput(['web01\nstarted\nbegin\n', 'web 01\nprepare\nbegin\n']), (text) => parseHookEvent(text));
    fuzz('hook spool prepare request', textInput(['web\nprepare\nbegin\n/run/tideline/hook-events/.42.reply\nvg0\n\n<domain/>\n']), (text) => parsePrepareRequest(text));
    fuzz('guest agent reply', textInput(['{"return": {"pid": 42}}', '{"return": {"exited": true, "exitcode": 0, "out-data": "b2sK"}}', '{"error": {"class": "GenericError", "desc": "no"}}']), (line) => parseReply(line));
  });
});
