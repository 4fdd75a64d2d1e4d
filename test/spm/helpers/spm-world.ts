import { mkdtemp, open, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { initLoopDomain, LoopPlugin } from '../../../plugins/loop/index.js';
import { initLeaseVolume, openStorageLease } from '../../../src/lease/open-storage-lease.js';
import type { StorageLease } from '../../../src/lease/storage-lease.js';
import { silentLogger } from '../../../src/log/logger.js';
import { BLOCK_BYTES, decodeHeader, encodeHeader, wakeUpOffset } from '../../../src/mailbox/format.js';
import { Mailbox } from '../../../src/mailbox/mailbox.js';
import { MailboxExtender } from '../../../src/mailbox/mailbox-extender.js';
import { DoorbellListener, DoorbellRinger } from '../../../src/doorbell/doorbell.js';
import { SpmService, type SpmOptions } from '../../../src/spm/spm-service.js';
import { systemClock } from '../../../src/util/clock.js';
import { execaRunner } from '../../../src/util/runner.js';

/**
 * An SPM serving for real in this process: a loop domain, a mailbox file
 * (direct I/O), a storage lease it holds, and host 2's extender on a mailbox
 * handle of its own. `close` removes all of it.
 */
export class SpmWorld {
  private readonly stop = new AbortController();
  private serving: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly dir: string,
    readonly plugin: LoopPlugin,
    readonly lease: StorageLease,
    readonly spmMailbox: Mailbox,
    readonly hostMailbox: Mailbox,
    readonly spm: SpmService,
    readonly host: MailboxExtender,
    readonly doorbell: { listener: DoorbellListener; ringer: DoorbellRinger } | undefined,
  ) {}

  /**
   * `withoutWakeUpBlock`: a version 1 mailbox that ends before its wake-up block, as one an older tideline made.
   * `doorbell`: the SPM listens for rings on a loopback port, and host 2 rings it after each request.
   */
  static async start(options: { capacityBytes: number; logger?: Logger; spm?: Partial<SpmOptions>; withoutWakeUpBlock?: boolean; doorbell?: boolean }): Promise<SpmWorld> {
    const dir = await mkdtemp('/var/tmp/tideline-spm-test-');
    await initLoopDomain(path.join(dir, 'domain'), options.capacityBytes);
    const plugin = await LoopPlugin.open(path.join(dir, 'domain'), execaRunner);
    await Mailbox.init(path.join(dir, 'mailbox'), { maxHosts: 8 });
    if (options.withoutWakeUpBlock) await makeVersionOneWithoutWakeUpBlock(path.join(dir, 'mailbox'));
    await initLeaseVolume(path.join(dir, 'leases'), 8);
    const spmMailbox = await Mailbox.open(path.join(dir, 'mailbox'));
    const hostMailbox = await Mailbox.open(path.join(dir, 'mailbox'));
    // Not tight: the SPM stops at its next step once a renewal is late (fencing), and a loaded machine delays renewals.
    const lease = await openStorageLease({ path: path.join(dir, 'leases'), hostId: 1, maxHosts: 8, timing: { renewMs: 50, ioTimeoutMs: 300, expiryMs: 2_000, marginMs: 500 }, clock: systemClock, logger: silentLogger });
    await lease.acquire();
    const spm = new SpmService({ mailbox: spmMailbox, plugin, lease, clock: systemClock, logger: options.logger ?? silentLogger, run: execaRunner, ...options.spm });
    let doorbell: { listener: DoorbellListener; ringer: DoorbellRinger } | undefined;
    if (options.doorbell) {
      const listener = await DoorbellListener.listen({ host: '127.0.0.1', port: 0 }, { mailboxId: spmMailbox.header.mailboxId, maxHosts: spmMailbox.maxHosts, logger: silentLogger, onRing: (hostId) => spm.ring(hostId) });
      doorbell = { listener, ringer: new DoorbellRinger([listener.address], { hostId: 2, mailboxId: hostMailbox.header.mailboxId }, silentLogger) };
    }
    const host = await MailboxExtender.open({ mailbox: hostMailbox, hostId: 2, plugin, clock: systemClock, logger: silentLogger, pollMs: 5, ...(doorbell ? { doorbell: doorbell.ringer } : {}) });
    const world = new SpmWorld(dir, plugin, lease, spmMailbox, hostMailbox, spm, host, doorbell);
    world.serving = spm.serve(world.stop.signal);
    return world;
  }

  /** Resolves when serving ended (the lease lost, or close). */
  get served(): Promise<unknown> {
    return this.serving;
  }

  async close(): Promise<void> {
    this.stop.abort();
    await this.serving;
    this.host.close();
    this.doorbell?.ringer.close();
    await this.doorbell?.listener.close();
    await this.lease.close();
    await this.spmMailbox.close();
    await this.hostMailbox.close();
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** What an older tideline's `mailbox init` left: a version 1 header, and the volume ending before the wake-up block. */
export async function makeVersionOneWithoutWakeUpBlock(mailboxPath: string): Promise<void> {
  const file = await open(mailboxPath, 'r+');
  try {
    const header = Buffer.alloc(BLOCK_BYTES);
    await file.read(header, 0, BLOCK_BYTES, 0);
    const decoded = decodeHeader(header);
    if (decoded.kind !== 'valid') throw new Error(`${mailboxPath} has no header to rewrite`);
    await file.write(encodeHeader({ ...decoded.value, version: 1 }), 0, BLOCK_BYTES, 0);
    await file.truncate(wakeUpOffset(decoded.value.maxHosts));
  } finally {
    await file.close();
  }
}
