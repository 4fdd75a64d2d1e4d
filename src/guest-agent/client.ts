import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { GuestAgentCommandError, GuestAgentError } from './errors.js';
import { encodeRequest, ReplyReader, type GuestAgentReply } from './protocol.js';

/**
 * A connection to a QEMU guest agent through the host end of its
 * virtio-serial channel (a unix socket QEMU listens on). The agent answers
 * one request at a time, in order, without ids, so requests are queued here
 * and a reply is always the answer to the oldest request in flight. After a
 * request timed out that pairing is lost; the next request resynchronises
 * first with `guest-sync-delimited`.
 */
const SYNC_ATTEMPT_MS = 1_000;
const CONNECT_RETRY_MS = 100;

export class GuestAgentClient {
  private readonly reader = new ReplyReader();
  private readonly waiting: Array<(reply: GuestAgentReply) => void> = [];
  private queue: Promise<unknown> = Promise.resolve();
  private inSync = false;
  private closed = false;

  private constructor(
    private readonly socket: net.Socket,
    readonly socketPath: string,
  ) {
    socket.on('data', (chunk: Buffer) => {
      for (const reply of this.reader.push(chunk)) this.waiting.shift()?.(reply);
    });
    socket.on('close', () => {
      this.closed = true;
      for (const resolve of this.waiting.splice(0)) resolve({ kind: 'garbage', line: '', reason: 'connection closed' });
    });
    socket.on('error', () => undefined);
  }

  /** Connects (QEMU may not listen yet) and waits until the agent in the guest answers, up to `timeoutMs`. */
  static async connect(socketPath: string, timeoutMs: number): Promise<GuestAgentClient> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const socket = await new Promise<net.Socket | undefined>((resolve) => {
        const candidate = net.connect(socketPath);
        candidate.once('connect', () => resolve(candidate));
        candidate.once('error', () => resolve(undefined));
      });
      if (socket) {
        const client = new GuestAgentClient(socket, socketPath);
        await client.sync(deadline);
        return client;
      }
      if (performance.now() > deadline) throw new GuestAgentError(`cannot connect to the guest agent socket ${socketPath}; is the QEMU that serves it running?`);
      await sleep(CONNECT_RETRY_MS);
    }
  }

  /** One command; resolves with its `return` value. */
  request(execute: string, args: Record<string, unknown> | undefined, timeoutMs: number): Promise<unknown> {
    const result = this.queue.then(async () => {
      if (!this.inSync) await this.sync(performance.now() + timeoutMs);
      return this.exchange(execute, args, timeoutMs);
    });
    this.queue = result.catch(() => undefined);
    return result;
  }

  close(): void {
    this.closed = true;
    this.socket.destroy();
  }

  private async exchange(execute: string, args: Record<string, unknown> | undefined, timeoutMs: number): Promise<unknown> {
    const reply = await this.send(execute, args, timeoutMs);
    if (!reply) {
      this.inSync = false;
      throw new GuestAgentError(`guest agent on ${this.socketPath} did not answer ${execute} within ${timeoutMs} ms; the guest may be hung or overloaded`);
    }
    if (reply.kind === 'error') throw new GuestAgentCommandError(execute, reply.errorClass, reply.description);
    if (reply.kind === 'garbage') {
      this.inSync = false;
      throw new GuestAgentError(`guest agent on ${this.socketPath} sent garbage for ${execute}: ${reply.reason}`);
    }
    return reply.value;
  }

  /**
   * Sends guest-sync-delimited with a fresh id until the agent answers with
   * that id. Replies to anything sent earlier (while the guest was booting,
   * or before a timeout) come first and are skipped.
   */
  private async sync(deadline: number): Promise<void> {
    for (;;) {
      if (this.closed) throw new GuestAgentError(`guest agent socket ${this.socketPath} closed; the guest's QEMU has exited`);
      const id = Math.floor(Math.random() * 2 ** 31);
      this.socket.write(encodeRequest('guest-sync-delimited', { id }));
      const attemptEnd = Math.min(deadline, performance.now() + SYNC_ATTEMPT_MS);
      while (performance.now() < attemptEnd) {
        const reply = await this.next(attemptEnd - performance.now());
        if (reply?.kind === 'return' && reply.value === id) {
          this.inSync = true;
          return;
        }
      }
      if (performance.now() >= deadline) throw new GuestAgentError(`guest agent on ${this.socketPath} did not answer guest-sync-delimited in time; is qemu-ga running in the guest?`);
    }
  }

  private send(execute: string, args: Record<string, unknown> | undefined, timeoutMs: number): Promise<GuestAgentReply | undefined> {
    if (this.closed) return Promise.reject(new GuestAgentError(`guest agent socket ${this.socketPath} closed; the guest's QEMU has exited`));
    const reply = this.next(timeoutMs);
    this.socket.write(encodeRequest(execute, args));
    return reply;
  }

  private next(timeoutMs: number): Promise<GuestAgentReply | undefined> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        const index = this.waiting.indexOf(deliver);
        if (index !== -1) this.waiting.splice(index, 1);
        resolve(undefined);
      }, Math.max(1, timeoutMs));
      const deliver = (reply: GuestAgentReply) => {
        clearTimeout(timer);
        resolve(reply);
      };
      this.waiting.push(deliver);
    });
  }
}
