import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { checkLibvirtSocket } from '../../src/doctor/checks.js';
import { DirectLibvirt } from '../../src/libvirt/remote/direct-libvirt.js';
import { AuthType, Procedure } from '../../src/libvirt/remote/procedures.js';
import { XdrWriter } from '../../src/libvirt/remote/xdr.js';
import { FakeLibvirtd } from '../libvirt/remote/fake-libvirtd.js';

/** `tideline doctor`'s libvirt socket check against a stand-in daemon; the real one is in test/integration/libvirt-direct.test.ts. */
describe('doctor: libvirt socket', () => {
  let dir: string;
  let fake: FakeLibvirtd | undefined;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'tideline-doctor-socket-'));
  });
  afterEach(async () => {
    await fake?.close();
    fake = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  const daemon = async (authTypes: number[]) => {
    fake = await FakeLibvirtd.listen(path.join(dir, 'libvirt-sock'), (header) => {
      if (header.procedure === Procedure.authList) return { body: new XdrWriter().uint(authTypes.length).int(authTypes[0] ?? 0).bytes() };
      if (header.procedure === Procedure.connectGetLibVersion) return { body: new XdrWriter().uint(0).uint(9_000_000).bytes() };
      return { body: Buffer.alloc(0) };
    });
    return `qemu+unix:///system?socket=${fake.path}`;
  };

  it('says the agent asks the daemon directly, with the socket and libvirt version', async () => {
    const uri = await daemon([AuthType.none]);
    assert.deepEqual(await checkLibvirtSocket(new DirectLibvirt(uri)), { check: 'libvirt socket', status: 'ok', detail: `${uri} answers over ${fake!.path} (libvirt 9.0.0); the agent asks it directly at every poll` });
  });

  it('warns when the agent will start virsh for every question, and why', async () => {
    const sasl = await daemon([AuthType.sasl]);
    const finding = await checkLibvirtSocket(new DirectLibvirt(sasl));
    assert.equal(finding.status, 'warn');
    assert.match(finding.detail, /cannot be asked over a local socket \(.*authentication methods \[1\].*\); the agent will start virsh for every question/);
    const remote = await checkLibvirtSocket(new DirectLibvirt('qemu+ssh://host-b/system'));
    assert.match(remote.detail, /no local libvirt socket serves qemu\+ssh:\/\/host-b\/system/);
  });
});
