import assert from 'node:assert/strict';
import { MESSAGES_PER_SLOT, Operation, ReplyStatus, type Decoded, type Reply, type Request, type Slot } from '../../src/mailbox/format.js';
import type { Mailbox } from '../../src/mailbox/mailbox.js';
import { MailboxExtender, MailboxRequestRefusedError, MailboxTimeoutError } from '../../src/mailbox/mailbox-extender.js';
import { silentLogger } from '../../src/log/logger.js';
import { systemClock } from '../../src/util/clock.js';
import { FakeClock } from '../helpers/fake-clock.js';
import type { StoragePlugin } from '../../plugins/types.js';

/** The host side against an in-memory mailbox whose "SPM" the test plays by hand. */
class MemoryMailbox {
  requests: Slot<Request> | undefined;
  replies: Slot<Reply> = { hostId: 3, generation: 0, messages: new Array(MESSAGES_PER_SLOT).fill(undefined) };
  writes = 0;

  assertHostId(): void {}

  async readRequests(): Promise<Decoded<Slot<Request>>> {
    return this.requests ? { kind: 'valid', value: structuredClone(this.requests) } : { kind: 'empty' };
  }

  replyReads = 0;

  async readReplies(): Promise<Decoded<Slot<Reply>>> {
    this.replyReads += 1;
    return { kind: 'valid', value: structuredClone(this.replies) };
  }

  async writeRequests(slot: Slot<Request>): Promise<void> {
    this.writes += 1;
    this.requests = structuredClone(slot);
  }

  pending(): Array<{ index: number; request: Request }> {
    return (this.requests?.messages ?? []).flatMap((request, index) => (request ? [{ index, request }] : []));
  }

  answer(index: number, reply: Reply): void {
    this.replies.messages[index] = reply;
  }
}

const plugin = { refresh: async () => 0 } as unknown as StoragePlugin;
const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function extenderOn(mailbox: MemoryMailbox, options: { resendMs?: number; timeoutMs?: number } = {}): Promise<MailboxExtender> {
  return MailboxExtender.open({ mailbox: mailbox as unknown as Mailbox, hostId: 3, plugin, clock: systemClock, logger: silentLogger, pollMs: 2, ...options });
}

describe('mailbox extender (host side)', () => {
  it('keeps many requests in flight, each in its own message, and matches replies by sequence', async () => {
    const mailbox = new MemoryMailbox();
    const extender = await extenderOn(mailbox);
    const first = extender.extend('a-vda', 100);
    const second = extender.extend('b-vda', 200);
    await wait(20);
    const pending = mailbox.pending();
    assert.deepEqual(pending.map((entry) => [entry.request.volume, entry.request.sequence]), [['a-vda', 1], ['b-vda', 2]]);
    mailbox.answer(pending[1]!.index, { sequence: 2, status: ReplyStatus.Ok, resultBytes: 200 });
    mailbox.answer(pending[0]!.index, { sequence: 1, status: ReplyStatus.Ok, resultBytes: 100 });
    assert.deepEqual(await Promise.all([first, second]), [100, 200]);
    extender.close();
  });

  it('ignores a reply left at the index by an older request', async () => {
    const mailbox = new MemoryMailbox();
    mailbox.answer(0, { sequence: 41, status: ReplyStatus.Ok, resultBytes: 999 });
    mailbox.requests = { hostId: 3, generation: 7, messages: [{ sequence: 41, operation: Operation.Extend, volume: 'a-vda', targetBytes: 999, virtualBytes: 0 }] };
    const extender = await extenderOn(mailbox);
    let settled = false;
    const result = extender.extend('a-vda', 500).finally(() => (settled = true));
    await wait(20);
    const [entry] = mailbox.pending();
    assert.equal(entry!.request.sequence, 42, 'numbering continues after what the slot already held');
    assert.equal(settled, false, 'resolved by the old reply');
    mailbox.answer(entry!.index, { sequence: 42, status: ReplyStatus.Ok, resultBytes: 500 });
    assert.equal(await result, 500);
    extender.close();
  });

  it('rewrites its slot when no reply comes within the resend time', async () => {
    const mailbox = new MemoryMailbox();
    const extender = await extenderOn(mailbox, { resendMs: 30 });
    const result = extender.extend('a-vda', 100);
    await wait(10);
    const writesAfterSend = mailbox.writes;
    await wait(100);
    assert.ok(mailbox.writes > writesAfterSend, 'the slot was not written again');
    assert.equal(mailbox.pending()[0]!.request.sequence, 1, 'a resend must keep the sequence number');
    mailbox.answer(mailbox.pending()[0]!.index, { sequence: 1, status: ReplyStatus.Ok, resultBytes: 100 });
    assert.equal(await result, 100);
    extender.close();
  });

  it('gives up after the timeout with a typed error and frees the message', async () => {
    const mailbox = new MemoryMailbox();
    const extender = await extenderOn(mailbox, { timeoutMs: 40 });
    await assert.rejects(extender.extend('a-vda', 100), MailboxTimeoutError);
    await wait(10);
    assert.deepEqual(mailbox.pending(), []);
    extender.close();
  });

  it('turns an error reply into a refusal carrying the status code', async () => {
    const mailbox = new MemoryMailbox();
    const extender = await extenderOn(mailbox);
    const result = extender.extend('a-vda', 100);
    await wait(10);
    mailbox.answer(mailbox.pending()[0]!.index, { sequence: 1, status: ReplyStatus.DomainFull, resultBytes: 50 });
    const error = await result.catch((caught: unknown) => caught);
    assert.ok(error instanceof MailboxRequestRefusedError);
    assert.equal(error.code, 'domain-full');
    extender.close();
  });

  it('queues requests beyond the slot and sends them as messages free up', async () => {
    const mailbox = new MemoryMailbox();
    const extender = await extenderOn(mailbox);
    const results = Array.from({ length: MESSAGES_PER_SLOT + 3 }, (_, index) => extender.extend(`v${index}-vda`, index + 1));
    await wait(20);
    assert.equal(mailbox.pending().length, MESSAGES_PER_SLOT);
    for (let round = 0; round < 3 && mailbox.pending().length > 0; round += 1) {
      for (const { index, request } of mailbox.pending()) mailbox.answer(index, { sequence: request.sequence, status: ReplyStatus.Ok, resultBytes: request.targetBytes });
      await wait(20);
    }
    assert.deepEqual(await Promise.all(results), results.map((_, index) => index + 1));
    extender.close();
  });

  it('refuses a bad volume name at once instead of poisoning the slot', async () => {
    const mailbox = new MemoryMailbox();
    const extender = await extenderOn(mailbox);
    await assert.rejects(extender.extend('../etc', 100), { code: 'invalid-volume-name' });
    assert.equal(mailbox.writes, 0);
    extender.close();
  });

  it('reads its reply slot every 2 ms for 50 ms after a request, then at its poll interval, and eagerly again after the next request', async () => {
    const clock = new FakeClock();
    const mailbox = new MemoryMailbox();
    const extender = await MailboxExtender.open({ mailbox: mailbox as unknown as Mailbox, hostId: 3, plugin, clock, logger: silentLogger, pollMs: 10 });
    const opened = mailbox.replyReads;
    const first = extender.extend('a-vda', 100);
    await clock.advance(50);
    assert.equal(mailbox.replyReads - opened, 25, 'eager reads in the first 50 ms');
    const afterEager = mailbox.replyReads;
    await clock.advance(100);
    assert.equal(mailbox.replyReads - afterEager, 10, 'reads at the poll interval afterwards');
    const second = extender.extend('b-vda', 200);
    const beforeSecond = mailbox.replyReads;
    await clock.advance(20);
    assert.ok(mailbox.replyReads - beforeSecond >= 9, `a new request makes the reads eager again (${mailbox.replyReads - beforeSecond} in 20 ms)`);
    const [firstPending, secondPending] = mailbox.pending();
    mailbox.answer(firstPending!.index, { sequence: firstPending!.request.sequence, status: ReplyStatus.Ok, resultBytes: 100 });
    mailbox.answer(secondPending!.index, { sequence: secondPending!.request.sequence, status: ReplyStatus.Ok, resultBytes: 200 });
    await clock.advance(2);
    assert.deepEqual(await Promise.all([first, second]), [100, 200]);
    const answered = mailbox.replyReads;
    await clock.advance(100);
    assert.equal(mailbox.replyReads, answered, 'nothing outstanding: no reads at all');
    extender.close();
  });

  it('keeps its poll interval from the start when eager reads are turned off', async () => {
    const clock = new FakeClock();
    const mailbox = new MemoryMailbox();
    const extender = await MailboxExtender.open({ mailbox: mailbox as unknown as Mailbox, hostId: 3, plugin, clock, logger: silentLogger, pollMs: 10, eagerPoll: false });
    const opened = mailbox.replyReads;
    const request = extender.extend('a-vda', 100).catch(() => undefined);
    await clock.advance(50);
    assert.equal(mailbox.replyReads - opened, 5);
    extender.close();
    await request;
  });
});
