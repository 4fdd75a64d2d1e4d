import { EventEmitter } from 'node:events';
import net from 'node:net';
import type { Clock, TimerHandle } from '../util/clock.js';
import { QmpCommandError, QmpDisconnectedError, QmpProtocolError, QmpTimeoutError } from './errors.js';
import { encodeCommand, QmpDecoder, type Garbage } from './framing.js';
import type { QmpEvent, QmpGreeting } from './messages.js';

/** How long QEMU gets to greet and accept capabilities before the socket is deemed not QMP. */
export const HANDSHAKE_TIMEOUT_MS = 5_000;

interface Pending {
  command: string;
  resolve(value: unknown): void;
  reject(error: Error): void;
  timer: TimerHandle;
}

export interface SessionEvents {
  event: [QmpEvent];
  garbage: [Garbage];
  close: [Error | undefined];
}

/**
 * One connected QMP session: greeting, capabilities, then commands matched to
 * replies by id. Does not reconnect; QmpClient does that around it.
 */
export class QmpSession extends EventEmitter<SessionEvents> {
  private readonly pending = new Map<string, Pending>();
  private readonly decoder = new QmpDecoder();
  private nextId = 1;
  private closed = false;
  private greetingWaiter: ((greeting: QmpGreeting) => void) | undefined;

  private constructor(
    private readonly socket: net.Socket,
    readonly socketPath: string,
    private readonly clock: Clock,
  ) {
    super();
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', (error) => this.shutDown(error));
    socket.on('close', () => this.shutDown(undefined));
  }

  static async open(socketPath: string, clock: Clock, handshakeTimeoutMs = HANDSHAKE_TIMEOUT_MS): Promise<{ session: QmpSession; greeting: QmpGreeting }> {
    const socket = net.createConnection({ path: socketPath });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    }).catch((error: Error) => {
      socket.destroy();
      throw new QmpDisconnectedError('connect', socketPath, { cause: error });
    });
    const session = new QmpSession(socket, socketPath, clock);
    try {
      const greeting = await session.awaitGreeting(handshakeTimeoutMs);
      await session.execute('qmp_capabilities', undefined, handshakeTimeoutMs);
      return { session, greeting };
    } catch (error) {
      session.close();
      if (error instanceof QmpDisconnectedError) throw error;
      throw new QmpProtocolError(socketPath, `handshake failed: ${(error as Error).message}`, { cause: error });
    }
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  execute<T = unknown>(command: string, args: Record<string, unknown> | undefined, timeoutMs: number): Promise<T> {
    if (this.closed) return Promise.reject(new QmpDisconnectedError(command, this.socketPath));
    const id = `tideline-${this.nextId++}`;
    return new Promise<T>((resolve, reject) => {
      const timer = this.clock.setTimeout(() => {
        this.pending.delete(id);
        reject(new QmpTimeoutError(command, timeoutMs, this.socketPath));
      }, timeoutMs);
      this.pending.set(id, { command, resolve: resolve as (value: unknown) => void, reject, timer });
      this.socket.write(encodeCommand(command, args, id));
    });
  }

  close(): void {
    this.socket.destroy();
    this.shutDown(undefined);
  }

  private awaitGreeting(timeoutMs: number): Promise<QmpGreeting> {
    return new Promise((resolve, reject) => {
      const timer = this.clock.setTimeout(() => reject(new Error(`no greeting within ${timeoutMs} ms`)), timeoutMs);
      this.once('close', (error) => {
        timer.cancel();
        reject(new QmpDisconnectedError('greeting', this.socketPath, { cause: error }));
      });
      this.greetingWaiter = (greeting) => {
        timer.cancel();
        resolve(greeting);
      };
    });
  }

  private receive(chunk: Buffer): void {
    for (const message of this.decoder.push(chunk)) {
      switch (message.kind) {
        case 'greeting':
          this.greetingWaiter?.(message);
          this.greetingWaiter = undefined;
          break;
        case 'event':
          this.emit('event', message);
          break;
        case 'return':
        case 'error': {
          const waiter = message.id === undefined ? undefined : this.pending.get(message.id);
          if (!waiter) {
            // A reply to a command that already timed out: nobody waits for it any more.
            this.emit('garbage', { kind: 'garbage', line: JSON.stringify(message), reason: 'reply for no pending command' });
            break;
          }
          this.pending.delete(message.id!);
          waiter.timer.cancel();
          if (message.kind === 'return') waiter.resolve(message.value);
          else waiter.reject(new QmpCommandError(waiter.command, message.errorClass, message.description, this.socketPath));
          break;
        }
        case 'garbage':
          this.emit('garbage', message);
          break;
      }
    }
  }

  private shutDown(error: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    for (const [id, waiter] of this.pending) {
      this.pending.delete(id);
      waiter.timer.cancel();
      waiter.reject(new QmpDisconnectedError(waiter.command, this.socketPath, { cause: error }));
    }
    this.emit('close', error);
  }
}
