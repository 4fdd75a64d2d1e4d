import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { MessageStatus, MessageType, REMOTE_PROGRAM, REMOTE_PROTOCOL_VERSION, takeMessages, type MessageHeader } from '../../../src/libvirt/remote/rpc-message.js';
import { XdrWriter } from '../../../src/libvirt/remote/xdr.js';

/**
 * Bytes libvirt's daemon would send, for the decoders' tests, and a stand-in
 * daemon on a UNIX socket for the connection's fault cases (a real libvirtd
 * cannot be made to answer garbage or to hang). The real daemon is driven by
 * test/integration/libvirt-direct.test.ts.
 */
export function replyFrame(procedure: number, serial: number, body: Buffer, options: { status?: number; type?: number } = {}): Buffer {
  const header = new XdrWriter()
    .uint(28 + body.length)
    .uint(REMOTE_PROGRAM)
    .uint(REMOTE_PROTOCOL_VERSION)
    .int(procedure)
    .int(options.type ?? MessageType.reply)
    .uint(serial)
    .int(options.status ?? MessageStatus.ok)
    .bytes();
  return Buffer.concat([header, body]);
}

/** A `remote_error` body with no domain, network or extra strings. */
export function errorBody(code: number, message: string | undefined): Buffer {
  const writer = new XdrWriter().int(code).int(10).optionalString(message).int(2);
  return writer.uint(0).optionalString(undefined).optionalString(undefined).optionalString(undefined).int(0).int(0).uint(0).bytes();
}

export function domainBody(name: string, id = -1): Buffer {
  return new XdrWriter().string(name).fixedOpaque(Buffer.alloc(16, 7)).int(id).bytes();
}

/** What the stand-in answers to one call: a body, an error, raw bytes, or nothing at all. */
export type FakeAnswer = { body: Buffer } | { error: [number, string] } | { raw: Buffer } | 'silence' | 'hang-up';

export class FakeLibvirtd {
  readonly calls: MessageHeader[] = [];
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    readonly path: string,
  ) {}

  static async listen(path: string, answer: (header: MessageHeader, body: Buffer) => FakeAnswer): Promise<FakeLibvirtd> {
    let fake: FakeLibvirtd | undefined;
    const server = createServer((socket) => {
      fake!.sockets.add(socket);
      socket.on('close', () => fake!.sockets.delete(socket));
      let received: Buffer = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => {
        const { messages, rest } = takeMessages(Buffer.concat([received, chunk]));
        received = rest;
        for (const { header, body } of messages) {
          fake!.calls.push(header);
          const reply = answer(header, body);
          if (reply === 'silence') continue;
          if (reply === 'hang-up') {
            socket.destroy();
            return;
          }
          if ('raw' in reply) socket.write(reply.raw);
          else if ('body' in reply) socket.write(replyFrame(header.procedure, header.serial, reply.body));
          else socket.write(replyFrame(header.procedure, header.serial, errorBody(...reply.error), { status: MessageStatus.error }));
        }
      });
    });
    server.listen(path);
    await once(server, 'listening');
    fake = new FakeLibvirtd(server, path);
    return fake;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }
}
