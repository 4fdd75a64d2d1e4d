import { createConnection, type Socket } from 'node:net';
import { TideError } from '../../errors.js';
import { LibvirtError } from '../libvirt-error.js';
import { decodeRemoteError, encodeCall, MessageStatus, MessageType, REMOTE_PROGRAM, takeMessages, type RemoteError } from './rpc-message.js';
import { AuthType, decodeAuthList, encodeConnectOpen, Procedure } from './procedures.js';

/**
 * One connection to a local libvirt daemon over its UNIX socket, speaking the
 * RPC that virsh itself speaks. It answers in about a millisecond where
 * starting virsh takes 15-30 ms, which matters on paths an admin or a guest
 * waits on. Calls are answered by serial; the daemon's unsolicited messages
 * (the events a connection registered for) go to `onMessage`, when given.
 */

/** libvirt answered the call with an error of its own (no such domain, no metadata, ...). */
export class LibvirtCallError extends LibvirtError {
  constructor(
    readonly procedure: number,
    readonly remote: RemoteError,
  ) {
    super(remote.message);
  }
}

/**
 * The socket could not be used (absent, refused, closed early, not libvirt's
 * RPC, an authentication tideline does not speak). The caller may still reach
 * libvirt another way. A daemon that accepts but does not answer is a
 * LibvirtError instead: virsh would wait on the same daemon.
 */
export class LibvirtTransportError extends TideError {
  readonly code = 'libvirt-transport';
}

interface Pending {
  procedure: number;
  resolve(body: Buffer): void;
  reject(error: Error): void;
}

export class RemoteConnection {
  private received: Buffer = Buffer.alloc(0);
  private nextSerial = 1;
  private readonly pending = new Map<number, Pending>();
  private failure: Error | undefined;
  /** Told once when the connection ends, by either side. */
  onClose: ((error: Error) => void) | undefined;

  private constructor(
    private readonly socket: Socket,
    readonly path: string,
    private readonly timeoutMs: number,
    private readonly onMessage: ((procedure: number, body: Buffer) => void) | undefined,
  ) {
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', (error) => this.fail(new LibvirtTransportError(`libvirt socket ${path}: ${error.message}`, { cause: error })));
    socket.on('close', () => this.fail(new LibvirtTransportError(`libvirt closed its socket ${path} before answering`)));
  }

  /**
   * Connects, authenticates (none, or polkit, which libvirt grants root) and
   * opens `name`. `keepProcessAlive: false` for a connection kept between
   * questions: it must not hold a stopping agent (a call in flight still does,
   * by its timer).
   */
  static async open(path: string, name: string, timeoutMs: number, options: { keepProcessAlive?: boolean; onMessage?: (procedure: number, body: Buffer) => void } = {}): Promise<RemoteConnection> {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const connecting = createConnection(path);
      const timer = setTimeout(() => {
        connecting.destroy();
        reject(new LibvirtError(`libvirt socket ${path}: no connection within ${timeoutMs} ms; is the daemon stuck?`));
      }, timeoutMs);
      connecting.once('connect', () => {
        clearTimeout(timer);
        resolve(connecting);
      });
      connecting.once('error', (error: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(new LibvirtTransportError(`libvirt socket ${path}: ${error.code ?? error.message}`, { cause: error }));
      });
    });
    if (options.keepProcessAlive === false) socket.unref();
    const connection = new RemoteConnection(socket, path, timeoutMs, options.onMessage);
    try {
      const methods = decodeAuthList(await connection.call(Procedure.authList, Buffer.alloc(0)));
      if (methods.length > 0 && !methods.includes(AuthType.none)) {
        if (!methods.includes(AuthType.polkit)) throw new LibvirtTransportError(`libvirt socket ${path} asks for authentication methods [${methods.join(', ')}] that tideline does not speak; virsh will be used`);
        await connection.call(Procedure.authPolkit, Buffer.alloc(0));
      }
      await connection.call(Procedure.connectOpen, encodeConnectOpen(name));
      return connection;
    } catch (error) {
      connection.socket.destroy();
      throw error;
    }
  }

  /** Not closed, by either side. */
  get usable(): boolean {
    return this.failure === undefined;
  }

  call(procedure: number, body: Buffer): Promise<Buffer> {
    if (this.failure) return Promise.reject(this.failure);
    const serial = this.nextSerial++;
    return new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(serial);
        reject(new LibvirtError(`libvirt did not answer call ${procedure} on ${this.path} within ${this.timeoutMs} ms; is the daemon stuck?`));
      }, this.timeoutMs);
      this.pending.set(serial, {
        procedure,
        resolve: (reply) => {
          clearTimeout(timer);
          resolve(reply);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.socket.write(encodeCall(procedure, serial, body));
    });
  }

  /** Closes the libvirt connection politely, then the socket, whatever the daemon answers. */
  async close(): Promise<void> {
    if (!this.failure) await this.call(Procedure.connectClose, Buffer.alloc(0)).catch(() => undefined);
    this.failure ??= new LibvirtTransportError(`libvirt connection on ${this.path} is closed`);
    this.socket.destroy();
  }

  private receive(chunk: Buffer): void {
    let messages;
    try {
      ({ messages, rest: this.received } = takeMessages(Buffer.concat([this.received, chunk])));
    } catch (error) {
      this.fail(new LibvirtTransportError(`libvirt socket ${this.path}: ${(error as Error).message}`, { cause: error }));
      this.socket.destroy();
      return;
    }
    for (const { header, body } of messages) {
      if (header.type === MessageType.message) {
        if (header.program === REMOTE_PROGRAM) this.onMessage?.(header.procedure, body);
        continue;
      }
      if (header.type !== MessageType.reply) continue;
      const waiting = this.pending.get(header.serial);
      if (!waiting) continue;
      this.pending.delete(header.serial);
      try {
        if (header.status === MessageStatus.ok) waiting.resolve(body);
        else waiting.reject(new LibvirtCallError(waiting.procedure, decodeRemoteError(body)));
      } catch (error) {
        waiting.reject(new LibvirtTransportError(`libvirt socket ${this.path}: ${(error as Error).message}`, { cause: error }));
      }
    }
  }

  private fail(error: Error): void {
    if (!this.failure) this.onClose?.(error);
    this.failure ??= error;
    for (const waiting of this.pending.values()) waiting.reject(this.failure);
    this.pending.clear();
  }
}
