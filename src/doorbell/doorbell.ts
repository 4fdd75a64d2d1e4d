import { createSocket, type Socket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import type { ListenAddress } from '../config/listen-address.js';
import { formatAddress, isWildcardAddress, type UdpEndpoint } from '../util/address-text.js';
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

  /**
   * The address hosts may ring, as the SPM names it in their reply slots: the
   * bound IP address and port. Undefined for a wildcard address (0.0.0.0,
   * ::), which says nothing about where this host is reached.
   */
  get reachableAddress(): UdpEndpoint | undefined {
    const { address, port } = this.socket.address();
    return isWildcardAddress(address) ? undefined : { address, port };
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }
}

/**
 * A host's end: after its request is in its slot, one datagram to the
 * doorbell the SPM named in the host's reply slot and to each candidate
 * listed in spm-doorbells (only the acting SPM listens). Never throws and never
 * waits: a ring that is lost costs latency only, since the SPM still reads
 * the wake-up block and scans every slot on its own. A failing send is logged
 * once until one works again.
 */
/** A name in spm-doorbells is looked up again this often, so a changed DNS record is followed without a lookup per ring. */
const RESOLVE_AGAIN_AFTER_MS = 60_000;

type Family = 4 | 6;
export type AddressLookup = (host: string) => Promise<{ address: string; family: number }>;

interface Resolved {
  address: string;
  family: Family;
  at: number;
}

export class DoorbellRinger {
  private readonly sockets = new Map<Family, Socket>();
  private readonly resolved = new Map<string, Resolved>();
  private readonly looking = new Map<string, Promise<Resolved>>();
  private readonly datagram: Buffer;
  private failing = false;
  sent = 0;
  failed = 0;

  constructor(
    private readonly addresses: readonly ListenAddress[],
    ring: { hostId: number; mailboxId: string },
    private readonly logger: Logger,
    /** How a host name is turned into an address (node's resolver by default; a test counts the lookups). */
    private readonly lookupAddress: AddressLookup = (host) => lookup(host),
  ) {
    this.datagram = encodeRing(ring);
  }

  /**
   * Rings every configured candidate, and `named`: the doorbell the SPM named
   * in this host's reply slot (an IP address), unless it is configured too.
   */
  ring(named?: UdpEndpoint): void {
    const targets = named ? [...this.addresses, { host: named.address, port: named.port }] : this.addresses;
    const seen = new Set<string>();
    for (const address of targets) {
      const key = formatAddress(address);
      if (seen.has(key)) continue;
      seen.add(key);
      const target = this.target(address);
      if (target instanceof Promise) {
        target.then((resolved) => this.send(address, resolved), (error: unknown) => this.noteFailure(address, error));
      } else this.send(address, target);
    }
  }

  close(): void {
    for (const socket of this.sockets.values()) socket.close();
    this.sockets.clear();
  }

  /**
   * An address to send to: at once for an IP address or a name looked up in
   * the last minute; otherwise after one lookup (node's dgram would look a
   * name up again for every datagram).
   */
  private target(address: ListenAddress): Resolved | Promise<Resolved> {
    const family = isIP(address.host);
    if (family !== 0) return { address: address.host, family: family as Family, at: 0 };
    const cached = this.resolved.get(address.host);
    if (cached && performance.now() - cached.at < RESOLVE_AGAIN_AFTER_MS) return cached;
    const inFlight = this.looking.get(address.host);
    if (inFlight) return inFlight;
    const looked = this.lookupAddress(address.host)
      .then(({ address: resolved, family: resolvedFamily }) => {
        const entry: Resolved = { address: resolved, family: resolvedFamily === 6 ? 6 : 4, at: performance.now() };
        this.resolved.set(address.host, entry);
        return entry;
      })
      .finally(() => this.looking.delete(address.host));
    this.looking.set(address.host, looked);
    return looked;
  }

  private send(address: ListenAddress, target: Resolved): void {
    this.socketFor(target.family).send(this.datagram, address.port, target.address, (error) => {
      if (!error) {
        this.sent += 1;
        this.failing = false;
        return;
      }
      // A name may point elsewhere by now: look it up again at the next ring.
      this.resolved.delete(address.host);
      this.noteFailure(address, error);
    });
  }

  private noteFailure(address: ListenAddress, error: unknown): void {
    this.failed += 1;
    if (this.failing) return;
    this.failing = true;
    this.logger.warn({ doorbell: formatAddress(address), err: errorMessage(error) }, "cannot ring the SPM's doorbell; the SPM finds requests at its own slower looks (check spm-doorbells in tideline.conf, the doorbell the SPM names in the reply slots, and that UDP can pass)");
  }

  private socketFor(family: Family): Socket {
    let socket = this.sockets.get(family);
    if (!socket) {
      socket = createSocket({ type: family === 6 ? 'udp6' : 'udp4' });
      // Errors come back through each send's callback; this keeps a stray one from being thrown.
      socket.on('error', () => undefined);
      // A ringer must never keep a stopping agent alive.
      socket.unref();
      this.sockets.set(family, socket);
    }
    return socket;
  }
}
