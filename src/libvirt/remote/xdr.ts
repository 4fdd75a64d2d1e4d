import { TideError } from '../../errors.js';

/**
 * XDR (RFC 4506), the encoding of libvirt's RPC messages: big-endian 32-bit
 * words, strings and variable opaques as a length word and the bytes padded
 * to a multiple of four. Only the types libvirt's remote protocol uses. Pure:
 * bytes in, values out, so the decoder can be fuzzed.
 */
export class XdrDecodeError extends TideError {
  readonly code = 'libvirt-protocol';
}

/** REMOTE_STRING_MAX: libvirt refuses longer strings, and so does this decoder. */
export const XDR_STRING_MAX = 4_194_304;

function padding(length: number): number {
  return (4 - (length % 4)) % 4;
}

export class XdrWriter {
  private readonly parts: Buffer[] = [];

  int(value: number): this {
    const word = Buffer.alloc(4);
    word.writeInt32BE(value);
    this.parts.push(word);
    return this;
  }

  uint(value: number): this {
    const word = Buffer.alloc(4);
    word.writeUInt32BE(value);
    this.parts.push(word);
    return this;
  }

  string(value: string): this {
    const bytes = Buffer.from(value, 'utf8');
    this.uint(bytes.length);
    this.parts.push(bytes, Buffer.alloc(padding(bytes.length)));
    return this;
  }

  /** A `remote_string`: an XDR optional (a present flag, then the string). */
  optionalString(value: string | undefined): this {
    if (value === undefined) return this.uint(0);
    return this.uint(1).string(value);
  }

  fixedOpaque(bytes: Uint8Array): this {
    this.parts.push(Buffer.from(bytes), Buffer.alloc(padding(bytes.length)));
    return this;
  }

  bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
}

export class XdrReader {
  private at = 0;

  constructor(private readonly buffer: Buffer) {}

  private take(length: number, what: string): Buffer {
    if (this.at + length > this.buffer.length) {
      throw new XdrDecodeError(`libvirt message ends inside ${what} (needs ${length} bytes at offset ${this.at}, has ${this.buffer.length - this.at})`);
    }
    const slice = this.buffer.subarray(this.at, this.at + length);
    this.at += length;
    return slice;
  }

  int(): number {
    return this.take(4, 'an int').readInt32BE();
  }

  uint(): number {
    return this.take(4, 'an unsigned int').readUInt32BE();
  }

  /** A 64-bit integer as a number: exact up to 2^53, which bounds every size and count libvirt reports. */
  hyper(): number {
    return Number(this.take(8, 'a hyper').readBigInt64BE());
  }

  unsignedHyper(): number {
    return Number(this.take(8, 'an unsigned hyper').readBigUInt64BE());
  }

  double(): number {
    return this.take(8, 'a double').readDoubleBE();
  }

  bool(): boolean {
    const value = this.uint();
    if (value > 1) throw new XdrDecodeError(`libvirt message has ${value} where a boolean (0 or 1) belongs`);
    return value === 1;
  }

  string(): string {
    const length = this.uint();
    if (length > XDR_STRING_MAX) throw new XdrDecodeError(`libvirt message has a string of ${length} bytes, more than libvirt's limit of ${XDR_STRING_MAX}`);
    const text = this.take(length, 'a string').toString('utf8');
    this.take(padding(length), 'the padding of a string');
    return text;
  }

  optionalString(): string | undefined {
    return this.bool() ? this.string() : undefined;
  }

  fixedOpaque(length: number): Buffer {
    const bytes = Buffer.from(this.take(length, 'fixed opaque data'));
    this.take(padding(length), 'the padding of opaque data');
    return bytes;
  }

  /** The count of a variable-length array, refused above `max` before anything is allocated for it. */
  arrayLength(max: number, what: string): number {
    const length = this.uint();
    if (length > max) throw new XdrDecodeError(`libvirt message has ${length} ${what}, more than the protocol's limit of ${max}`);
    return length;
  }

  get remaining(): number {
    return this.buffer.length - this.at;
  }
}
