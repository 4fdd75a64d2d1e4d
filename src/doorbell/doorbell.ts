import { createSocket, type Socket } from 'node:dgram';
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import type { ListenAddress } from '../config/listen-address.js';
import { errorMessage, TideError } from '../errors.js';
import { decodeRing, encodeRing } from './ring-format.js';

/** The doorbell's address could not be bound (taken, not this host's, not allowed). */
export class DoorbellBindError extends TideError {
  readonly code = 'doorbell-bind-failed';
}

/** Ignored rings are logged at most this often; every one is counted. */
const IGNORED_LOG_INTERVAL_MS = 60_000;

export interface DoorbellCounts {
  /** Rings for this mailbox from a host id it has. */
  rings: number;
  /** Datagrams that were not such a ring (garbage, another cluster's mailbox, a newer format). */
  ignored: number;
}

/**
 * The acting SPM's end of the doorbell (docs/mailbox-format.md, "Doorbell"):
 * a UDP socket that calls `onRing` for every valid ring of this mailbox. A
 * ring only makes the SPM look at the mailbox; what it serves is what the
 * slots say.
 */
export class DoorbellListener {
  readonly counts: DoorbellCounts = { rings: 0, ignored: 0 };
  private lastIgnoredLogAt = Number.NEGATIVE_INFINITY;

  private constructor(
    private readonly socket: Socket,
    readonly address: ListenAddress,
  ) {}

  static async listen(address: ListenAddress, options: { mailboxId: string; maxHosts: number; logger: Logger; onRing: (hostId: number) => void }): Promise<DoorbellListener> {
    const socket = createSocket({ type: isIP(address.host) === 6 ? 'udp6' : 'udp4' });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', (error: NodeJS.ErrnoException) => {
        socket.close();
        reject(new DoorbellBindError(`cannot listen for doorbell rings on ${formatAddress(address)}: ${error.code ?? error.message}; set 'doorbell' in tideline.conf to an address of this host and a free UDP port`, { cause: error }));
      });
      socket.bind(address.port, address.host, () => resolve());
    });
    const listener = new DoorbellListener(socket, { host: address.host, port: socket.address().port });
    socket.removeAllListeners('error');
    socket.on('error', (error) => options.logger.warn({ err: errorMessage(error) }, 'doorbell socket error'));
    socket.on('message', (datagram, from) => {
      const ring = decodeRing(datagram, options.maxHosts);
      if (ring.kind === 'valid' && ring.value.mailboxId === options.mailboxId) {
        listener.counts.rings += 1;
        options.onRing(ring.value.hostId);
        return;
      }
      listener.counts.ignored += 1;
      const now = performance.now();
      if (now - listener.lastIgnoredLogAt < IGNORED_LOG_INTERVAL_MS) return;
      listener.lastIgnoredLogAt = now;
      const why = ring.kind === 'invalid' ? `${ring.reason}: ${ring.detail}` : ring.kind === 'valid' ? `a ring for mailbox ${ring.value.mailboxId}, not this one (${options.mailboxId})` : 'empty';
      options.logger.warn({ from: `${from.address}:${from.port}`, why, ignoredSoFar: listener.counts.ignored }, 'ignored a datagram on the doorbell (logged once a minute)');
    });
    return listener;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }
}

/**
 * A host's end: after its request is in its slot, one datagram to each SPM
 * candidate's doorbell (only the acting SPM listens). Never throws and never
 * waits: a ring that is lost costs latency only, since the SPM still reads
 * the wake-up block and scans every slot on its own. A failing send is logged
 * once until one works again.
 */
export class DoorbellRinger {
  private readonly sockets = new Map<'udp4' | 'udp6', Socket>();
  private readonly datagram: Buffer;
  private failing = false;
  sent = 0;
  failed = 0;

  constructor(
    private readonly addresses: readonly ListenAddress[],
    ring: { hostId: number; mailboxId: string },
    private readonly logger: Logger,
  ) {
    this.datagram = encodeRing(ring);
  }

  ring(): void {
    for (const address of this.addresses) {
      this.socketFor(address).send(this.datagram, address.port, address.host, (error) => {
        if (!error) {
          this.sent += 1;
          this.failing = false;
          return;
        }
        this.failed += 1;
        if (this.failing) return;
        this.failing = true;
        this.logger.warn({ doorbell: formatAddress(address), err: errorMessage(error) }, "cannot ring the SPM's doorbell; the SPM finds requests at its own slower looks (check spm-doorbells in tideline.conf and that UDP can pass)");
      });
    }
  }

  close(): void {
    for (const socket of this.sockets.values()) socket.close();
    this.sockets.clear();
  }

  private socketFor(address: ListenAddress): Socket {
    const type = isIP(address.host) === 6 ? 'udp6' : 'udp4';
    let socket = this.sockets.get(type);
    if (!socket) {
      socket = createSocket({ type });
      // Errors come back through each send's callback; this keeps a stray one from being thrown.
      socket.on('error', () => undefined);
      // A ringer must never keep a stopping agent alive.
      socket.unref();
      this.sockets.set(type, socket);
    }
    return socket;
  }
}

export function formatAddress(address: ListenAddress): string {
  return isIP(address.host) === 6 ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}
