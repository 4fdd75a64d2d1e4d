import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { LibvirtError } from '../../../src/libvirt/libvirt-error.js';
import { DirectLibvirt } from '../../../src/libvirt/remote/direct-libvirt.js';
import { AuthType, JOB_OPERATION_MIGRATION_OUT, Procedure } from '../../../src/libvirt/remote/procedures.js';
import { LibvirtTransportError } from '../../../src/libvirt/remote/remote-connection.js';
import { MessageStatus, MessageType, type MessageHeader } from '../../../src/libvirt/remote/rpc-message.js';
import { XdrReader, XdrWriter } from '../../../src/libvirt/remote/xdr.js';
import { Virsh } from '../../../src/libvirt/virsh.js';
import type { Runner } from '../../../src/util/runner.js';
import { domainBody, FakeLibvirtd, replyFrame, type FakeAnswer } from './fake-libvirtd.js';

const NAMESPACE = 'https://tideline.dev/xmlns/policy/1';
const POLICY = `<tl:thin xmlns:tl="${NAMESPACE}" chunk="1G"/>`;
const empty = Buffer.alloc(0);

/** A daemon that knows domain 'web' (with a policy and an outgoing migration) and nothing else. */
function usualAnswers(overrides: Partial<Record<number, (header: MessageHeader, body: Buffer) => FakeAnswer>> = {}) {
  return (header: MessageHeader, body: Buffer): FakeAnswer => {
    const override = overrides[header.procedure];
    if (override) return override(header, body);
    switch (header.procedure) {
      case Procedure.authList:
        return { body: new XdrWriter().uint(1).int(AuthType.none).bytes() };
      case Procedure.connectOpen:
      case Procedure.connectClose:
        return { body: empty };
      case Procedure.domainLookupByName: {
        const name = new XdrReader(body).string();
        return name === 'web' ? { body: domainBody('web', 5) } : { error: [42, `Domain not found: no domain with matching name '${name}'`] };
      }
      case Procedure.domainGetMetadata:
        return { body: new XdrWriter().string(POLICY).bytes() };
      case Procedure.domainGetJobStats:
        return { body: new XdrWriter().int(2).uint(1).string('operation').int(1).int(JOB_OPERATION_MIGRATION_OUT).bytes() };
      default:
        return { error: [1, `procedure ${header.procedure} not expected`] };
    }
  };
}

describe('libvirt over its socket (stand-in daemon)', function () {
  this.timeout(20_000);
  let dir: string;
  let fake: FakeLibvirtd | undefined;
  const start = async (answers: ReturnType<typeof usualAnswers>) => {
    fake = await FakeLibvirtd.listen(path.join(dir, 'libvirt-sock'), answers);
    return new DirectLibvirt(`qemu+unix:///system?socket=${fake.path}`);
  };

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'tideline-direct-libvirt-'));
  });
  afterEach(async () => {
    await fake?.close();
    fake = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  it('asks in the order libvirt expects and closes the connection after each question', async () => {
    const direct = await start(usualAnswers());
    assert.equal(await direct.metadata('web', NAMESPACE), POLICY);
    assert.equal(await direct.migratingOut('web'), true);
    const procedures = fake!.calls.map((call) => call.procedure);
    const one = [Procedure.authList, Procedure.connectOpen, Procedure.domainLookupByName];
    assert.deepEqual(procedures, [...one, Procedure.domainGetMetadata, Procedure.connectClose, ...one, Procedure.domainGetJobStats, Procedure.connectClose]);
    assert.deepEqual(fake!.calls.slice(0, 5).map((call) => call.serial), [1, 2, 3, 4, 5]);
  });

  it('answers "" for a domain without the element, and names an unknown domain', async () => {
    const direct = await start(usualAnswers({ [Procedure.domainGetMetadata]: () => ({ error: [80, 'metadata not found: Requested metadata element is not present'] }) }));
    assert.equal(await direct.metadata('web', NAMESPACE), '');
    await assert.rejects(direct.metadata('db', NAMESPACE), (error: unknown) => error instanceof LibvirtError && !(error instanceof LibvirtTransportError) && error.message === "libvirt (qemu+unix:///system?socket=" + fake!.path + ") has no domain 'db': Domain not found: no domain with matching name 'db'");
  });

  it('passes polkit, which libvirt grants root, and refuses SASL as unusable (virsh then asks)', async () => {
    const polkit = await start(usualAnswers({ [Procedure.authList]: () => ({ body: new XdrWriter().uint(1).int(AuthType.polkit).bytes() }), [Procedure.authPolkit]: () => ({ body: new XdrWriter().int(1).bytes() }) }));
    assert.equal(await polkit.metadata('web', NAMESPACE), POLICY);
    assert.ok(fake!.calls.some((call) => call.procedure === Procedure.authPolkit));
    await fake!.close();
    const sasl = await start(usualAnswers({ [Procedure.authList]: () => ({ body: new XdrWriter().uint(1).int(AuthType.sasl).bytes() }) }));
    await assert.rejects(sasl.metadata('web', NAMESPACE), (error: unknown) => error instanceof LibvirtTransportError && /authentication methods \[1\]/.test(error.message));
  });

  it('skips what it did not ask for: events and replies to other serials, arriving first', async () => {
    const direct = await start(
      usualAnswers({
        [Procedure.domainGetMetadata]: (header) => ({
          raw: Buffer.concat([
            replyFrame(315, 0, Buffer.from('event'), { type: MessageType.message }),
            replyFrame(Procedure.domainGetMetadata, header.serial + 100, new XdrWriter().string('<other/>').bytes()),
            replyFrame(Procedure.domainGetMetadata, header.serial, new XdrWriter().string(POLICY).bytes()),
          ]),
        }),
      }),
    );
    assert.equal(await direct.metadata('web', NAMESPACE), POLICY);
  });

  it('calls a socket unusable when it is absent, hangs up, or does not speak libvirt', async () => {
    await assert.rejects(new DirectLibvirt(`qemu+unix:///system?socket=${path.join(dir, 'absent')}`).metadata('web', NAMESPACE), (error: unknown) => error instanceof LibvirtTransportError && /ENOENT/.test(error.message));
    await assert.rejects(new DirectLibvirt('qemu+ssh://host-b/system').metadata('web', NAMESPACE), (error: unknown) => error instanceof LibvirtTransportError && /no local libvirt socket serves qemu\+ssh/.test(error.message));
    const hangsUp = await start(usualAnswers({ [Procedure.domainLookupByName]: () => 'hang-up' }));
    await assert.rejects(hangsUp.metadata('web', NAMESPACE), (error: unknown) => error instanceof LibvirtTransportError && /closed its socket/.test(error.message));
    await fake!.close();
    const garbage = await start(() => ({ raw: Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n') }));
    await assert.rejects(garbage.metadata('web', NAMESPACE), (error: unknown) => error instanceof LibvirtTransportError && /does not speak libvirt's RPC/.test(error.message));
    await fake!.close();
    const truncated = await start(usualAnswers({ [Procedure.domainLookupByName]: (header) => ({ raw: replyFrame(header.procedure, header.serial, Buffer.from('0000', 'hex')) }) }));
    await assert.rejects(truncated.metadata('web', NAMESPACE), /ends inside/);
    assert.deepEqual(
      fake!.calls.map((call) => call.status),
      fake!.calls.map(() => MessageStatus.ok),
    );
  });

  it('reports a daemon that accepts and never answers as stuck, not as unusable: virsh would wait on it too', async () => {
    fake = await FakeLibvirtd.listen(path.join(dir, 'libvirt-sock'), usualAnswers({ [Procedure.domainGetJobStats]: () => 'silence' }));
    const direct = new DirectLibvirt(`qemu+unix:///system?socket=${fake.path}`, { timeoutMs: 300 });
    const asked: string[][] = [];
    const virsh = new Virsh(async (_command, args) => (asked.push([...args]), { stdout: '', stderr: '', exitCode: 0 }), direct.uri, direct);
    await assert.rejects(virsh.migratingOut('web'), (error: unknown) => error instanceof LibvirtError && !(error instanceof LibvirtTransportError) && /did not answer call 298 .* within 300 ms; is the daemon stuck\?/.test(error.message));
    assert.deepEqual(asked, []);
  });

  describe('Virsh with the direct path', () => {
    const recordingRunner = (asked: string[][]): Runner => async (_command, args) => {
      asked.push([...args]);
      return { stdout: args.includes('metadata') ? '<from-virsh/>' : 'Job type: Unbounded\nOperation: Outgoing migration', stderr: '', exitCode: 0 };
    };

    it('says an unusable socket again after it answered in between', async () => {
      const unusable: string[] = [];
      const socket = path.join(dir, 'libvirt-sock');
      const direct = new DirectLibvirt(`qemu+unix:///system?socket=${socket}`, { onUnusable: (error) => unusable.push(error.message) });
      const virsh = new Virsh(recordingRunner([]), direct.uri, direct);
      await virsh.metadata('web', NAMESPACE);
      fake = await FakeLibvirtd.listen(socket, usualAnswers());
      assert.equal(await virsh.metadata('web', NAMESPACE), POLICY);
      await fake.close();
      await virsh.metadata('web', NAMESPACE);
      assert.equal(unusable.length, 2);
    });

    it('does not start virsh when the socket answers, also for an answer that is an error', async () => {
      const direct = await start(usualAnswers());
      const asked: string[][] = [];
      const virsh = new Virsh(recordingRunner(asked), direct.uri, direct);
      assert.equal(await virsh.metadata('web', NAMESPACE), POLICY);
      assert.equal(await virsh.migratingOut('web'), true);
      await assert.rejects(virsh.metadata('db', NAMESPACE), /has no domain 'db'/);
      assert.deepEqual(asked, []);
    });

    it('asks virsh when the socket is unusable', async () => {
      const unusable: string[] = [];
      const direct = new DirectLibvirt(`qemu+unix:///system?socket=${path.join(dir, 'absent')}`, { onUnusable: (error) => unusable.push(error.message) });
      const asked: string[][] = [];
      const virsh = new Virsh(recordingRunner(asked), direct.uri, direct);
      assert.equal(await virsh.metadata('web', NAMESPACE), '<from-virsh/>');
      assert.equal(await virsh.migratingOut('web'), true);
      assert.deepEqual(asked.map((args) => args[3]), ['metadata', 'domjobinfo']);
      assert.equal(unusable.length, 1, 'said once, not once per question');
      assert.match(unusable[0]!, /ENOENT/);
    });
  });
});
