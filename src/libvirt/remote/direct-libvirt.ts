import { existsSync } from 'node:fs';
import { LibvirtError } from '../libvirt-error.js';
import { LibvirtErrorNumber } from './rpc-message.js';
import { LibvirtCallError, LibvirtTransportError, RemoteConnection } from './remote-connection.js';
import { XdrDecodeError } from './xdr.js';
import { decodeDomain, decodeGetJobStats, decodeGetMetadata, encodeGetJobStats, encodeGetMetadata, encodeLookupByName, isOutgoingMigration, Procedure, type RemoteDomain } from './procedures.js';
import { localEndpointFor } from './socket-path.js';

/** A stuck daemon is reported as one; it must not hold the caller as long as virsh's own timeout. */
const DIRECT_TIMEOUT_MS = 10_000;

/**
 * The questions tideline asks libvirt on paths someone waits on, answered over
 * the local daemon's socket: one connection per question (a millisecond or
 * two), so a restarted daemon needs no reconnecting. Throws
 * LibvirtTransportError when this URI or socket cannot be served here; the
 * caller then asks virsh.
 */
export class DirectLibvirt {
  constructor(
    readonly uri: string,
    private readonly options: { exists?: (path: string) => boolean; timeoutMs?: number; onUnusable?: (error: Error) => void } = {},
  ) {}

  private unusableSaid = false;

  /**
   * The caller is asking virsh instead: said once (to the agent's log) until
   * a question goes through again, so a daemon with an authentication
   * tideline does not speak shows as one line, not one per extension.
   */
  noteUnusable(error: Error): void {
    if (this.unusableSaid) return;
    this.unusableSaid = true;
    this.options.onUnusable?.(error);
  }

  /** The domain's element in `namespace`, or '' when it has none. */
  metadata(domain: string, namespace: string): Promise<string> {
    return this.withDomain(domain, async (connection, handle) => {
      try {
        return decodeGetMetadata(await connection.call(Procedure.domainGetMetadata, encodeGetMetadata(handle, namespace)));
      } catch (error) {
        if (error instanceof LibvirtCallError && error.remote.code === LibvirtErrorNumber.noDomainMetadata) return '';
        throw error;
      }
    });
  }

  /** Whether the domain's current job is the source side of a migration. */
  migratingOut(domain: string): Promise<boolean> {
    return this.withDomain(domain, async (connection, handle) => isOutgoingMigration(decodeGetJobStats(await connection.call(Procedure.domainGetJobStats, encodeGetJobStats(handle)))));
  }

  private async withDomain<T>(domain: string, ask: (connection: RemoteConnection, handle: RemoteDomain) => Promise<T>): Promise<T> {
    const endpoint = localEndpointFor(this.uri, this.options.exists ?? existsSync);
    if (!endpoint) throw new LibvirtTransportError(`no local libvirt socket serves ${this.uri}`);
    const connection = await RemoteConnection.open(endpoint.socket, endpoint.name, this.options.timeoutMs ?? DIRECT_TIMEOUT_MS);
    try {
      let handle: RemoteDomain;
      try {
        handle = decodeDomain(await connection.call(Procedure.domainLookupByName, encodeLookupByName(domain)));
      } catch (error) {
        if (error instanceof LibvirtCallError && error.remote.code === LibvirtErrorNumber.noDomain) throw new LibvirtError(`libvirt (${this.uri}) has no domain '${domain}': ${error.message}`, { cause: error });
        throw error;
      }
      const answer = await ask(connection, handle);
      this.unusableSaid = false;
      return answer;
    } finally {
      await connection.close();
    }
  }
}

/** The direct path could not be used (no socket, refused, a reply it cannot read): virsh may still answer. */
export function directPathUnusable(error: unknown): boolean {
  return error instanceof LibvirtTransportError || error instanceof XdrDecodeError;
}

/** What the agent logs when it asks virsh instead (once, until the socket answers again). */
export const DIRECT_UNUSABLE_MESSAGE = 'the libvirt socket cannot be used; asking virsh instead';
