import { existsSync } from 'node:fs';
import { LibvirtError } from '../libvirt-error.js';
import { blockStatsFromFields, type BlockStats, type DomainState } from '../domain-facts.js';
import { describeDomainState } from './domain-state.js';
import { LibvirtErrorNumber } from './rpc-message.js';
import { LibvirtCallError, LibvirtTransportError, RemoteConnection } from './remote-connection.js';
import { XdrDecodeError } from './xdr.js';
import {
  decodeDomain,
  decodeGetAllDomainStats,
  decodeGetDiskErrors,
  decodeGetJobStats,
  decodeGetMetadata,
  decodeGetState,
  decodeGetXmlDesc,
  decodeLibVersion,
  encodeDomainOnly,
  encodeGetBlockStats,
  encodeGetDiskErrors,
  encodeGetJobStats,
  encodeGetMetadata,
  encodeGetXmlDesc,
  encodeGetState,
  encodeLookupByName,
  encodeSetBlockThreshold,
  isOutgoingMigration,
  Procedure,
  type RemoteDomain,
} from './procedures.js';
import { localEndpointFor } from './socket-path.js';

/** A stuck daemon is reported as one; it must not hold the caller as long as virsh's own timeout. */
const DIRECT_TIMEOUT_MS = 10_000;

export interface DirectLibvirtOptions {
  /**
   * Keep one connection for every question (the agent, which asks about each
   * VM at every poll) and open a new one when it broke, as after a restart of
   * libvirtd. Without it, one connection per question (`policy show`).
   */
  keepOpen?: boolean;
  exists?: (path: string) => boolean;
  timeoutMs?: number;
  /** Told when a question could not use the socket and the caller asks virsh instead (once, until one goes through). */
  onUnusable?: (error: Error) => void;
}

/**
 * The questions tideline asks libvirt at every poll and on paths someone
 * waits on, answered over the local daemon's socket in about a millisecond
 * where each virsh costs 10-15 ms of CPU. Throws LibvirtTransportError (or
 * XdrDecodeError) when this URI or socket cannot be served here; the caller
 * then asks virsh.
 */
export class DirectLibvirt {
  private kept: Promise<RemoteConnection> | undefined;
  private unusableSaid = false;

  constructor(
    readonly uri: string,
    private readonly options: DirectLibvirtOptions = {},
  ) {}

  /**
   * The caller is asking virsh instead: said once (to the agent's log) until
   * a question goes through again, so a daemon with an authentication
   * tideline does not speak shows as one line, not one per poll.
   */
  noteUnusable(error: Error): void {
    if (this.unusableSaid) return;
    this.unusableSaid = true;
    this.options.onUnusable?.(error);
  }

  /** The domain's element in `namespace`, or '' when it has none. */
  metadata(domain: string, namespace: string): Promise<string> {
    return this.withDomain(domain, 'read its metadata', async (connection, handle) => {
      try {
        return decodeGetMetadata(await connection.call(Procedure.domainGetMetadata, encodeGetMetadata(handle, namespace)));
      } catch (error) {
        if (error instanceof LibvirtCallError && error.remote.code === LibvirtErrorNumber.noDomainMetadata) return '';
        throw error;
      }
    });
  }

  /**
   * Whether the domain's current job is the source side of a migration. On
   * a migration's destination libvirt refuses the question ("migration
   * statistics are available only on the source host"): that domain is
   * migrating in, not out (in post-copy it runs there meanwhile).
   */
  migratingOut(domain: string): Promise<boolean> {
    return this.withDomain(domain, 'read its job', async (connection, handle) => {
      try {
        return isOutgoingMigration(decodeGetJobStats(await connection.call(Procedure.domainGetJobStats, encodeGetJobStats(handle))));
      } catch (error) {
        if (error instanceof LibvirtCallError && error.remote.code === LibvirtErrorNumber.operationUnsupported) return false;
        throw error;
      }
    });
  }

  /** The live domain XML: the agent re-reads it on every change libvirt reports (reconcile), so it must cost no process. */
  xml(domain: string): Promise<string> {
    return this.withDomain(domain, 'read its XML', async (connection, handle) => decodeGetXmlDesc(await connection.call(Procedure.domainGetXmlDesc, encodeGetXmlDesc(handle))));
  }

  state(domain: string): Promise<DomainState> {
    return this.withDomain(domain, 'read its state', async (connection, handle) => {
      const { state, reason } = decodeGetState(await connection.call(Procedure.domainGetState, encodeGetState(handle)));
      return describeDomainState(state, reason);
    });
  }

  blockStats(domain: string): Promise<BlockStats[]> {
    return this.withDomain(domain, 'read its block statistics', async (connection, handle) => blockStatsFromFields(decodeGetAllDomainStats(await connection.call(Procedure.connectGetAllDomainStats, encodeGetBlockStats(handle)))));
  }

  /** Disk targets whose last I/O failed, in virsh's words ("no space"); disks without an error are left out, as virsh does. */
  blockErrors(domain: string): Promise<Map<string, string>> {
    return this.withDomain(domain, 'read its disk errors', async (connection, handle) => {
      const errors = decodeGetDiskErrors(await connection.call(Procedure.domainGetDiskErrors, encodeGetDiskErrors(handle)));
      return new Map([...errors].filter(([, text]) => text !== 'no error'));
    });
  }

  setThreshold(domain: string, device: string, bytes: number): Promise<void> {
    return this.withDomain(domain, `set the write threshold of ${device}`, async (connection, handle) => {
      await connection.call(Procedure.domainSetBlockThreshold, encodeSetBlockThreshold(handle, device, bytes));
    });
  }

  resume(domain: string): Promise<void> {
    return this.withDomain(domain, 'resume it', async (connection, handle) => {
      await connection.call(Procedure.domainResume, encodeDomainOnly(handle));
    });
  }

  /** Which socket answers for this URI and the version of the libvirt behind it (`tideline doctor`). */
  probe(): Promise<{ socket: string; libvirtVersion: string }> {
    return this.withConnection(async (connection) => ({ socket: connection.path, libvirtVersion: decodeLibVersion(await connection.call(Procedure.connectGetLibVersion, Buffer.alloc(0))) }));
  }

  /** Closes a kept connection (the agent stopping). */
  async close(): Promise<void> {
    const kept = this.kept;
    this.kept = undefined;
    await (await kept?.catch(() => undefined))?.close();
  }

  private open(): Promise<RemoteConnection> {
    const endpoint = localEndpointFor(this.uri, this.options.exists ?? existsSync);
    if (!endpoint) return Promise.reject(new LibvirtTransportError(`no local libvirt socket serves ${this.uri}`));
    return RemoteConnection.open(endpoint.socket, endpoint.name, this.options.timeoutMs ?? DIRECT_TIMEOUT_MS, { keepProcessAlive: !this.options.keepOpen });
  }

  private async connection(): Promise<RemoteConnection> {
    if (!this.options.keepOpen) return this.open();
    const current = this.kept;
    const kept = await current?.catch(() => undefined);
    if (kept?.usable) return kept;
    // Only the first question to find it broken opens a new one; the others wait for that one.
    if (this.kept === current) this.kept = this.open();
    return this.kept!;
  }

  /** A connection for one question: the kept one, or one of its own closed after it. */
  private async withConnection<T>(use: (connection: RemoteConnection) => Promise<T>): Promise<T> {
    const connection = await this.connection();
    try {
      return await use(connection);
    } finally {
      if (!this.options.keepOpen) await connection.close();
    }
  }

  /** Looks the domain up and asks; libvirt's refusal is said with what was asked of which domain. */
  private withDomain<T>(domain: string, operation: string, ask: (connection: RemoteConnection, handle: RemoteDomain) => Promise<T>): Promise<T> {
    return this.withConnection(async (connection) => {
      let handle: RemoteDomain;
      try {
        handle = decodeDomain(await connection.call(Procedure.domainLookupByName, encodeLookupByName(domain)));
      } catch (error) {
        if (error instanceof LibvirtCallError && error.remote.code === LibvirtErrorNumber.noDomain) throw new LibvirtError(`libvirt (${this.uri}) has no domain '${domain}': ${error.message}`, { cause: error });
        throw error;
      }
      let answer: T;
      try {
        answer = await ask(connection, handle);
      } catch (error) {
        if (error instanceof LibvirtCallError) throw new LibvirtError(`libvirt (${this.uri}) could not ${operation} for domain '${domain}': ${error.message}`, { cause: error });
        throw error;
      }
      this.unusableSaid = false;
      return answer;
    });
  }
}

/** The direct path could not be used (no socket, refused, a reply it cannot read): virsh may still answer. */
export function directPathUnusable(error: unknown): boolean {
  return error instanceof LibvirtTransportError || error instanceof XdrDecodeError;
}

/** What the agent logs when it asks virsh instead (once, until the socket answers again). */
export const DIRECT_UNUSABLE_MESSAGE = 'the libvirt socket cannot be used; asking virsh instead';
