import { XdrDecodeError, XdrReader, XdrWriter } from './xdr.js';

/**
 * The framing of libvirt's RPC (src/rpc/virnetprotocol.x): every message is a
 * 4-byte total length (itself included), a 24-byte header, then the XDR body
 * of the call, the reply or the error. Pure functions over bytes.
 */
export const REMOTE_PROGRAM = 0x20008086;
export const REMOTE_PROTOCOL_VERSION = 1;

export const MessageType = { call: 0, reply: 1, message: 2, stream: 3, callWithFds: 4, replyWithFds: 5, streamHole: 6 } as const;
export const MessageStatus = { ok: 0, error: 1, continue: 2 } as const;

const LENGTH_BYTES = 4;
const HEADER_BYTES = 24;
/** VIR_NET_MESSAGE_MAX in current libvirt; a longer length word means the stream is not libvirt's. */
export const MESSAGE_MAX_BYTES = 33_554_432;

export interface MessageHeader {
  program: number;
  version: number;
  procedure: number;
  type: number;
  serial: number;
  status: number;
}

export interface Message {
  header: MessageHeader;
  body: Buffer;
}

export function encodeCall(procedure: number, serial: number, body: Buffer): Buffer {
  const header = new XdrWriter()
    .uint(LENGTH_BYTES + HEADER_BYTES + body.length)
    .uint(REMOTE_PROGRAM)
    .uint(REMOTE_PROTOCOL_VERSION)
    .int(procedure)
    .int(MessageType.call)
    .uint(serial)
    .int(MessageStatus.ok)
    .bytes();
  return Buffer.concat([header, body]);
}

/**
 * Splits what has arrived so far into whole messages and the bytes of the
 * next, incomplete one. Throws on a length word no libvirt message can have.
 */
export function takeMessages(received: Buffer): { messages: Message[]; rest: Buffer } {
  const messages: Message[] = [];
  let at = 0;
  while (received.length - at >= LENGTH_BYTES) {
    const length = received.readUInt32BE(at);
    if (length < LENGTH_BYTES + HEADER_BYTES || length > MESSAGE_MAX_BYTES) {
      throw new XdrDecodeError(`libvirt sent a message length of ${length} bytes (a message has ${LENGTH_BYTES + HEADER_BYTES} to ${MESSAGE_MAX_BYTES}); this socket does not speak libvirt's RPC`);
    }
    if (received.length - at < length) break;
    messages.push(decodeMessage(received.subarray(at + LENGTH_BYTES, at + length)));
    at += length;
  }
  return { messages, rest: received.subarray(at) };
}

function decodeMessage(frame: Buffer): Message {
  const reader = new XdrReader(frame);
  const header: MessageHeader = {
    program: reader.uint(),
    version: reader.uint(),
    procedure: reader.int(),
    type: reader.int(),
    serial: reader.uint(),
    status: reader.int(),
  };
  return { header, body: Buffer.from(frame.subarray(HEADER_BYTES)) };
}

/** libvirt's virErrorNumber values tideline tells apart. */
export const LibvirtErrorNumber = {
  noDomain: 42,
  noDomainMetadata: 80,
  operationInvalid: 55,
  operationUnsupported: 84,
} as const;

/** The fields of `remote_error` a caller needs; the rest (domain, network, extra strings) only describe it further. */
export interface RemoteError {
  code: number;
  domain: number;
  message: string;
  level: number;
}

export function decodeRemoteError(body: Buffer): RemoteError {
  const reader = new XdrReader(body);
  const code = reader.int();
  const domain = reader.int();
  const message = reader.optionalString() ?? `libvirt error ${code}`;
  const level = reader.int();
  return { code, domain, message, level };
}
