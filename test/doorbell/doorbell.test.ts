import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { pino } from 'pino';
import { DoorbellBindError, DoorbellListener, DoorbellRinger } from '../../src/doorbell/doorbell.js';
import { encodeRing } from '../../src/doorbell/ring-format.js';
import { silentLogger } from '../../src/log/logger.js';

const MAILBOX_ID = '1b4e28ba-2fa1-11d2-883f-0016d3cca427';
const OTHER_MAILBOX_ID = '9f1c0d2e-3a4b-4c5d-8e6f-708192a3b4c5';

async function until(check: () => boolean, what: string, withinMs = 2_000): Promise<void> {
  const deadline = Date.now() + withinMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function collectingLogger(): { logger: typeof silentLogger; lines: Array<{ level: number; msg: string; [key: string]: unknown }> } {
  const lines: Array<{ level: number; msg: string }> = [];
  return { logger: pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as { level: number; msg: string }) }), lines };
}

/** Real UDP sockets on loopback: the acting SPM's listener and a host's ringer. */
describe('doorbell over UDP on loopback', function () {
  this.timeout(10_000);
  let listener: DoorbellListener;
  const rung: number[] = [];
  const { logger, lines } = collectingLogger();

  before(async () => {
    listener = await DoorbellListener.listen({ host: '127.0.0.1', port: 0 }, { mailboxId: MAILBOX_ID, maxHosts: 8, logger, onRing: (hostId) => rung.push(hostId) });
  });
  after(async () => {
    await listener?.close();
  });

  it("a host's ring reaches the listener with that host's id", async () => {
    const ringer = new DoorbellRinger([listener.address], { hostId: 3, mailboxId: MAILBOX_ID }, silentLogger);
    try {
      ringer.ring();
      ringer.ring();
      await until(() => rung.length >= 2, 'two rings');
      assert.deepEqual(rung.slice(0, 2), [3, 3]);
      assert.equal(ringer.sent, 2);
    } finally {
      ringer.close();
    }
  });

  it("counts and ignores garbage, another mailbox's rings and unknown hosts, and logs them once a minute", async () => {
    const ringsBefore = listener.counts.rings;
    const ignoredBefore = listener.counts.ignored;
    const heard = rung.length;
    const sender = createSocket('udp4');
    const send = (datagram: Buffer) => new Promise<void>((resolve, reject) => sender.send(datagram, listener.address.port, '127.0.0.1', (error) => (error ? reject(error) : resolve())));
    try {
      await send(Buffer.from('GET / HTTP/1.0\r\n\r\n'));
      await send(encodeRing({ hostId: 3, mailboxId: OTHER_MAILBOX_ID }));
      await send(encodeRing({ hostId: 9, mailboxId: MAILBOX_ID }));
      await send(Buffer.alloc(0));
    } finally {
      sender.close();
    }
    await until(() => listener.counts.ignored - ignoredBefore === 4, 'four ignored datagrams');
    assert.equal(listener.counts.rings, ringsBefore);
    assert.equal(rung.length, heard, 'an ignored datagram rang');
    const warnings = lines.filter((line) => line.msg.startsWith('ignored a datagram on the doorbell'));
    assert.equal(warnings.length, 1, 'logged more than once a minute');
    assert.match(String(warnings[0]!.why), /bad-size/);
  });

  it('says which address it could not listen on, and why', async () => {
    await assert.rejects(
      DoorbellListener.listen(listener.address, { mailboxId: MAILBOX_ID, maxHosts: 8, logger: silentLogger, onRing: () => undefined }),
      (error: unknown) => error instanceof DoorbellBindError && error.code === 'doorbell-bind-failed' && error.message.includes(`127.0.0.1:${listener.address.port}`) && error.message.includes('EADDRINUSE'),
    );
    await assert.rejects(DoorbellListener.listen({ host: '192.0.2.1', port: 0 }, { mailboxId: MAILBOX_ID, maxHosts: 8, logger: silentLogger, onRing: () => undefined }), /EADDRNOTAVAIL/);
  });

  it('a ring that cannot be sent is counted and logged once, never thrown', async () => {
    const { logger: ringerLogger, lines: ringerLines } = collectingLogger();
    // Broadcast without SO_BROADCAST: the kernel refuses every send at once (EACCES).
    const ringer = new DoorbellRinger([{ host: '255.255.255.255', port: 9 }], { hostId: 3, mailboxId: MAILBOX_ID }, ringerLogger);
    try {
      ringer.ring();
      ringer.ring();
      ringer.ring();
      await until(() => ringer.failed === 3, 'three failed sends');
      assert.equal(ringer.sent, 0);
      const warnings = ringerLines.filter((line) => line.msg.startsWith("cannot ring the SPM's doorbell"));
      assert.equal(warnings.length, 1);
      assert.equal(warnings[0]!.doorbell, '255.255.255.255:9');
    } finally {
      ringer.close();
    }
  });

  it('rings every candidate: a standby that does not listen costs nothing', async () => {
    const stray = createSocket('udp4');
    await new Promise<void>((resolve) => stray.bind(0, '127.0.0.1', () => resolve()));
    const closedPort = stray.address().port;
    await new Promise<void>((resolve) => stray.close(() => resolve()));
    const ringer = new DoorbellRinger([{ host: '127.0.0.1', port: closedPort }, listener.address], { hostId: 5, mailboxId: MAILBOX_ID }, silentLogger);
    const heard = rung.length;
    try {
      ringer.ring();
      await until(() => rung.length > heard, 'the ring at the listening candidate');
      assert.equal(rung.at(-1), 5);
    } finally {
      ringer.close();
    }
  });

  it('rings the doorbell the SPM named with nothing configured, and a named doorbell that is also configured once', async () => {
    const ringer = new DoorbellRinger([], { hostId: 6, mailboxId: MAILBOX_ID }, silentLogger);
    const configured = new DoorbellRinger([listener.address], { hostId: 7, mailboxId: MAILBOX_ID }, silentLogger);
    const heard = rung.length;
    try {
      ringer.ring();
      assert.equal(ringer.sent + ringer.failed, 0, 'nothing configured, nothing named: no datagram');
      ringer.ring({ address: '127.0.0.1', port: listener.address.port });
      await until(() => rung.length > heard, 'the ring at the named doorbell');
      configured.ring({ address: '127.0.0.1', port: listener.address.port });
      await until(() => configured.sent === 1, 'the configured ring');
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.deepEqual(rung.slice(heard), [6, 7]);
      assert.equal(configured.sent, 1);
    } finally {
      ringer.close();
      configured.close();
    }
  });

  it('looks a name up once for many rings, and again after a lookup failed', async () => {
    const own: number[] = [];
    const ownListener = await DoorbellListener.listen({ host: '127.0.0.1', port: 0 }, { mailboxId: MAILBOX_ID, maxHosts: 8, logger: silentLogger, onRing: (hostId) => own.push(hostId) });
    const lookups: string[] = [];
    let failNext = true;
    const warnings = collectingLogger();
    const ringer = new DoorbellRinger([{ host: 'spm-a.example', port: ownListener.address.port }], { hostId: 4, mailboxId: MAILBOX_ID }, warnings.logger, async (host) => {
      lookups.push(host);
      if (failNext) {
        failNext = false;
        throw new Error(`getaddrinfo ENOTFOUND ${host}`);
      }
      return { address: '127.0.0.1', family: 4 };
    });
    try {
      ringer.ring();
      await until(() => ringer.failed === 1, 'the failed lookup to count');
      assert.deepEqual(warnings.lines.map((line) => [line.doorbell, line.err]), [['spm-a.example:' + ownListener.address.port, 'getaddrinfo ENOTFOUND spm-a.example']]);
      for (let index = 0; index < 5; index += 1) ringer.ring();
      await until(() => own.length >= 5, 'five rings through the name');
      ringer.ring();
      await until(() => own.length >= 6, 'a sixth ring');
      assert.deepEqual(lookups, ['spm-a.example', 'spm-a.example'], 'one failed lookup, then one for six rings');
      assert.deepEqual(own, [4, 4, 4, 4, 4, 4]);
    } finally {
      ringer.close();
      await ownListener.close();
    }
  });
});
