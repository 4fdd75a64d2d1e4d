import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parsePolicyXml, policyXml, type DomainPolicy } from '../../src/libvirt/domain-xml.js';
import { readPlainPolicy } from '../../src/libvirt/policy-reader.js';
import { GiB, MiB } from '../../src/util/sizes.js';

/** What `virsh metadata` printed on libvirt 9.0 for a policy set with `tideline policy set`. */
const LIBVIRT_OUTPUT = `<thin chunk="268435456" free-target="128M">
  <drive target="vdb" enabled="no" max-size="10G"/>
</thin>`;

/** Whatever the plain reader answers, the full parser answers the same. */
function assertAgrees(xml: string): DomainPolicy | undefined {
  const plain = readPlainPolicy(xml);
  if (plain !== undefined) assert.deepEqual(plain, parsePolicyXml(xml), `the two readers differ on ${JSON.stringify(xml)}`);
  return plain;
}

const size = fc.integer({ min: 0, max: 2 ** 40 });
const diskPolicy = fc.record({ enabled: fc.boolean(), chunk: size, freeTarget: size, maxSize: size }, { requiredKeys: [], noNullPrototype: true });
const policy = fc.record({ vm: diskPolicy, disks: fc.dictionary(fc.constantFrom('vda', 'vdb', 'sdc', 'hda'), diskPolicy, { noNullPrototype: true }) }, { noNullPrototype: true });

describe('the plain policy reader (policy show without an XML library)', () => {
  it("reads libvirt's own output and what tideline writes, as the full parser does", () => {
    assert.deepEqual(assertAgrees(LIBVIRT_OUTPUT), { vm: { chunk: 256 * MiB, freeTarget: 128 * MiB }, disks: { vdb: { enabled: false, maxSize: 10 * GiB } } });
    assert.deepEqual(assertAgrees(''), { vm: {}, disks: {} });
    assert.deepEqual(assertAgrees('<thin/>'), { vm: {}, disks: {} });
    assert.deepEqual(assertAgrees("<thin xmlns='https://tideline.dev/xmlns/policy/1' enabled='yes'></thin>"), { vm: { enabled: true }, disks: {} });
    fc.assert(
      fc.property(policy, (generated) => {
        assert.deepEqual(assertAgrees(policyXml(generated)), generated);
      }),
    );
  });

  it('declines every form it does not fully understand, and the full parser decides those', () => {
    const declined: Array<[string, DomainPolicy | RegExp]> = [
      ['<thin chunk="1G"><!-- set by hand --><drive target="vda"/></thin>', { vm: { chunk: GiB }, disks: { vda: {} } }],
      ['<thin chunk="1&amp;"/>', /cannot read "1&"/],
      ['<thin chunk=" 1G"/>', { vm: { chunk: GiB }, disks: {} }],
      ['<tl:thin xmlns:tl="https://tideline.dev/xmlns/policy/1" chunk="1G"/>', { vm: { chunk: GiB }, disks: {} }],
      ['<thin><note/><drive target="vda" enabled="no"/></thin>', { vm: {}, disks: { vda: { enabled: false } } }],
      ['<thin><drive target="vda"><extra/></drive></thin>', { vm: {}, disks: { vda: {} } }],
      ['<thin>text</thin>', { vm: {}, disks: {} }],
      ['<other chunk="1G"/>', { vm: {}, disks: {} }],
      ['<?xml version="1.0"?><thin chunk="1G"/>', { vm: { chunk: GiB }, disks: {} }],
      ['<thin chunk="lots"/>', /tideline policy for the VM: chunk: cannot read "lots"/],
      ['<thin enabled="maybe"/>', /tideline policy for the VM: enabled/],
      ['<thin><drive enabled="no"/></thin>', /every <drive> needs a target/],
      ['<thin chunk="1G" chunk="2G"/>', /chunk/],
      ['<thin><drive target="vda"></thin>', /not well-formed/],
      ['<thin chunk="1G">', /not well-formed/],
    ];
    for (const [xml, expected] of declined) {
      assert.equal(readPlainPolicy(xml), undefined, `the plain reader should leave ${xml} to the full parser`);
      if (expected instanceof RegExp) assert.throws(() => parsePolicyXml(xml), expected, xml);
      else assert.deepEqual(parsePolicyXml(xml), expected, xml);
    }
  });

  it('never answers differently from the full parser, whatever the text', () => {
    const attribute = fc.tuple(fc.constantFrom('chunk', 'free-target', 'max-size', 'enabled', 'target', 'tl:chunk', 'xmlns'), fc.constantFrom('1G', '512', 'yes', 'no', 'vda', ' 2M', 'x&amp;y', ''), fc.constantFrom('"', "'"));
    const attributes = fc.array(attribute, { maxLength: 3 }).map((list) => list.map(([name, value, quote]) => ` ${name}=${quote}${value}${quote}`).join(''));
    const element = (name: fc.Arbitrary<string>, inner: fc.Arbitrary<string>) => fc.tuple(name, attributes, inner, fc.boolean(), fc.constantFrom('', ' ', '\n  ')).map(([tag, attrs, body, closed, space]) => (closed && body === '' ? `<${tag}${attrs}${space}/>` : `<${tag}${attrs}>${space}${body}</${tag}>`));
    const drive = element(fc.constantFrom('drive', 'note', 'tl:drive'), fc.constantFrom('', 'x', '<!-- c -->'));
    const thin = element(fc.constantFrom('thin', 'thin', 'tl:thin', 'other'), fc.array(drive, { maxLength: 3 }).map((list) => list.join('\n')));
    const answered = { plain: 0, declined: 0 };
    fc.assert(
      fc.property(thin, (xml) => {
        answered[assertAgrees(xml) === undefined ? 'declined' : 'plain'] += 1;
      }),
      { numRuns: 2_000 },
    );
    // Both sides must be reached, or the comparison proves nothing.
    assert.ok(answered.plain > 20 && answered.declined > 20, JSON.stringify(answered));
  });
});
