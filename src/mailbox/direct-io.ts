import { constants, type FileHandle, open } from 'node:fs/promises';
import { TideError } from '../errors.js';
import { BLOCK_BYTES } from './format.js';
import { alignedBuffer } from '../util/aligned-buffer.js';

/**
 * Reads and writes mailbox blocks around the page cache. Other hosts write
 * these blocks on the shared LUN; a cached read would show this host an old
 * slot forever. O_DIRECT needs a page-aligned memory buffer
 * (util/aligned-buffer.ts). O_DSYNC makes a write durable on the
 * storage before it is reported done.
 */
export class MailboxIoError extends TideError {
  readonly code = 'mailbox-io';
}


export class DirectBlockFile {
  private queue: Promise<unknown> = Promise.resolve();
  /** Bytes read from the storage so far: what this file costs the SAN (benchmarks print it). */
  bytesRead = 0;

  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    private readonly window: Buffer,
  ) {}

  /** `capacityBytes` is the largest single read or write this file will do. */
  static async open(path: string, capacityBytes: number): Promise<DirectBlockFile> {
    let handle: FileHandle;
    try {
      handle = await open(path, constants.O_RDWR | constants.O_DIRECT | constants.O_DSYNC);
    } catch (error) {
      throw new MailboxIoError(`cannot open ${path} for direct I/O: ${(error as Error).message}`, { cause: error });
    }
    return new DirectBlockFile(path, handle, alignedBuffer(capacityBytes));
  }

  /** A copy of `length` bytes at `offset` (both multiples of 4096). */
  read(offset: number, length: number): Promise<Buffer> {
    return this.serialize(async () => {
      this.check(offset, length);
      const { bytesRead } = await this.handle.read(this.window, 0, length, offset);
      this.bytesRead += bytesRead;
      if (bytesRead !== length) throw new MailboxIoError(`short read of ${this.path} at ${offset}: ${bytesRead} of ${length} bytes (is the volume smaller than its header says?)`);
      return Buffer.from(this.window.subarray(0, length));
    });
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    return this.serialize(async () => {
      this.check(offset, data.length);
      this.window.set(data, 0);
      const { bytesWritten } = await this.handle.write(this.window, 0, data.length, offset);
      if (bytesWritten !== data.length) throw new MailboxIoError(`short write to ${this.path} at ${offset}: ${bytesWritten} of ${data.length} bytes`);
    });
  }

  async close(): Promise<void> {
    await this.queue.catch(() => undefined);
    await this.handle.close();
  }

  private check(offset: number, length: number): void {
    if (offset % BLOCK_BYTES !== 0 || length % BLOCK_BYTES !== 0 || length === 0 || length > this.window.length) {
      throw new RangeError(`direct I/O of ${length} bytes at ${offset} is not whole blocks within the ${this.window.length}-byte window`);
    }
  }

  /** One aligned window, so one I/O at a time. */
  private serialize<T>(work: () => Promise<T>): Promise<T> {
    const result = this.queue.then(work, work);
    this.queue = result.catch(() => undefined);
    return result;
  }
}
