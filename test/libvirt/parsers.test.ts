import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseDomainXml, parsePolicyXml, policyFor, policyXml } from '../../src/libvirt/domain-xml.js';
import { parseEventLine } from '../../src/libvirt/events.js';
import { isOutgoingMigrationJob, parseBlockErrors, parseBlockStats, parseDomState } from '../../src/libvirt/virsh.js';
import { MiB } from '../../src/util/sizes.js';

/** What virsh and libvirt print, as captured from libvirt 9.0 on this project's machines. */
describe('libvirt output parsers', () => {
  it("reads a block copy's target from a disk's <mirror> (and nothing for an active commit's)", () => {
    const disk = (mirror: string) => parseDomainXml(`<domain><name>web</name><devices><disk type='block' device='disk'><driver name='qemu' type='qcow2'/><source dev='/dev/tl/web-vda' index='1'/>${mirror}<target dev='vda' bus='virtio'/></disk></devices></domain>`).disks[0]!;
    assert.deepEqual(disk(`<mirror type='block' job='copy' ready='yes'><format type='qcow2'/><source dev='/dev/tl/web-vda-copy' index='3'/></mirror>`).mirror, { job: 'copy', source: '/dev/tl/web-vda-copy', ready: true });
    assert.deepEqual(disk(`<mirror type='file' file='/var/tmp/copy.qcow2' format='qcow2' job='copy'/>`).mirror, { job: 'copy', source: '/var/tmp/copy.qcow2', ready: false });
    assert.equal(disk(`<mirror type='block' job='active-commit' ready='yes'><source dev='/dev/tl/web-base'/></mirror>`).mirror?.job, 'active-commit');
    assert.equal(disk('').mirror, undefined);
  });

  it('reads the events tideline acts on', () => {
    assert.deepEqual(parseEventLine("2026-11-25 02:53:49.964+0000: event 'block-threshold' for domain 'web 01': dev: vda[1](/dev/loop0) 50000000 659328"), {
      kind: 'block-threshold', domain: 'web 01', target: 'vda', index: 1, path: '/dev/loop0', thresholdBytes: 50_000_000, excessBytes: 659_328,
    });
    assert.deepEqual(parseEventLine("2026-11-25 02:53:50.350+0000: event 'io-error-reason' for domain 'web': /dev/loop0 (virtio-disk0) pause due to enospc"), {
      kind: 'io-error-reason', domain: 'web', path: '/dev/loop0', alias: 'virtio-disk0', action: 'pause', reason: 'enospc',
    });
    assert.deepEqual(parseEventLine("2026-11-25 02:53:50.350+0000: event 'lifecycle' for domain 'web': Suspended I/O Error"), { kind: 'lifecycle', domain: 'web', event: 'Suspended', detail: 'I/O Error' });
    assert.equal(parseEventLine("event 'metadata-change' for domain 'web': type: element, uri: https://x")?.kind, 'other');
    assert.equal(parseEventLine('events received: 3'), undefined);
  });

  it('property: never throws on arbitrary lines', () => {
    fc.assert(fc.property(fc.string(), (line) => void parseEventLine(line)));
  });

  it('reads domstate, domblkerror and domstats --block', () => {
    assert.deepEqual(parseDomState('paused (I/O error)\n'), { state: 'paused', reason: 'I/O error' });
    assert.deepEqual(parseDomState('running (booted)'), { state: 'running', reason: 'booted' });
    assert.deepEqual([...parseBlockErrors('vda: no space\nvdb: No errors found\n')], [['vda', 'no space']]);
    const stats = parseBlockStats("Domain: 'web'\n  block.count=1\n  block.0.name=vda\n  block.0.path=/dev/loop0\n  block.0.backingIndex=1\n  block.0.allocation=134545408\n  block.0.capacity=4294967296\n  block.0.physical=134217728\n  block.0.threshold=50000000\n");
    assert.deepEqual(stats, [{ target: 'vda', path: '/dev/loop0', backingIndex: 1, allocation: 134_545_408, physical: 134_217_728, capacity: 4_294_967_296, threshold: 50_000_000 }]);
  });

  it('tells an outgoing migration job from no job and from other jobs (virsh domjobinfo)', () => {
    assert.equal(isOutgoingMigrationJob('Job type:         None        \n'), false);
    assert.equal(isOutgoingMigrationJob('Job type:         Unbounded   \nOperation:        Outgoing migration\nTime elapsed:     1204         ms\nData processed:   12.102 MiB\n'), true);
    assert.equal(isOutgoingMigrationJob('Job type:         Unbounded   \nOperation:        Snapshot\n'), false);
    assert.equal(isOutgoingMigrationJob('Job type:         Completed   \nOperation:        Incoming migration\n'), false);
    assert.equal(isOutgoingMigrationJob(''), false);
  });

  it('reads the backing chain of a live disk as libvirt indexes it', () => {
    const info = parseDomainXml(`<domain type='qemu' id='1'><name>web</name><devices>
      <disk type='block' device='disk'><driver name='qemu' type='qcow2'/><source dev='/dev/sd1/web-vda-2' index='3'/>
        <backingStore type='block' index='2'><format type='qcow2'/><source dev='/dev/sd1/web-vda-1'/>
          <backingStore type='file' index='1'><format type='qcow2'/><source file='/var/lib/tpl.qcow2'/><backingStore/></backingStore>
        </backingStore>
        <target dev='vda' bus='virtio'/></disk></devices></domain>`);
    assert.deepEqual(info.disks[0]!.backingChain, [{ source: '/dev/sd1/web-vda-1', index: 2 }, { source: '/var/lib/tpl.qcow2', index: 1 }]);
  });

  it('finds the disks of a live domain XML and the tideline policy in its metadata', () => {
    const info = parseDomainXml(`<domain type='qemu' id='3'><name>web</name>
      <metadata><tl:thin xmlns:tl="https://tideline.dev/xmlns/policy/1" chunk="256M"><tl:drive target="vdb" enabled="no"/></tl:thin></metadata>
      <devices>
        <disk type='block' device='disk'><driver name='qemu' type='qcow2' error_policy='stop'/><source dev='/dev/sd1/web-vda' index='1'/><target dev='vda' bus='virtio'/></disk>
        <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='/iso/x.iso' index='2'/><target dev='sda' bus='sata'/></disk>
      </devices></domain>`);
    assert.deepEqual(info.disks[0], { target: 'vda', source: '/dev/sd1/web-vda', index: 1, format: 'qcow2', errorPolicy: 'stop', device: 'disk', backingChain: [] });
    assert.equal(info.disks[1]!.device, 'cdrom');
    assert.deepEqual(policyFor(info, 'vda'), { chunk: 256 * MiB });
    assert.deepEqual(policyFor(info, 'vdb'), { chunk: 256 * MiB, enabled: false });
  });

  it('writes the policy element so that reading it gives the same policy', () => {
    const policy = { vm: { chunk: 512 * MiB, freeTarget: 256 * MiB }, disks: { vdb: { enabled: false }, vdc: { maxSize: 10240 * MiB } } };
    assert.deepEqual(parsePolicyXml(policyXml(policy)), policy);
    assert.deepEqual(parsePolicyXml(''), { vm: {}, disks: {} });
  });

  it('names what is wrong in a bad policy or a broken XML', () => {
    assert.throws(() => parsePolicyXml("<thin chunk='lots'/>"), /tideline policy for the VM: chunk: .*cannot read "lots"/);
    assert.throws(() => parsePolicyXml("<thin><drive enabled='no'/></thin>"), /every <drive> needs a target/);
    assert.throws(() => parseDomainXml('<domain><name>x</name><devices>'), /not well-formed/);
  });
});
