import { TideError } from '../errors.js';

/** No extension can help: the volume already has the most its qcow2 image can use, or the admin's limit. */
export class CapReachedError extends TideError {
  readonly code = 'cap-reached';

  constructor(readonly vm: string, readonly drive: string, readonly volume: string, readonly capBytes: number) {
    super(
      `drive ${drive} of ${vm} (volume ${volume}) is at its cap of ${capBytes} bytes and cannot grow; ` +
        'raise the drive\'s maxSize policy, or check the image for leaked clusters (qemu-img check -r leaks)',
    );
  }
}

/** An extension did not finish in time (storage or SPM unresponsive). */
export class ExtensionTimeoutError extends TideError {
  readonly code = 'extension-timeout';

  constructor(readonly volume: string, readonly timeoutMs: number) {
    super(`extending volume ${volume} did not finish within ${timeoutMs} ms; is the storage (or the SPM) reachable?`);
  }
}

/** No host a VM migrates to confirmed, through the shared storage, that it sees a volume's new space. */
export class DestinationViewStaleError extends TideError {
  readonly code = 'destination-view-stale';

  constructor(readonly volume: string, readonly bytes: number, readonly waitedMs: number) {
    super(
      `no migration destination confirmed within ${waitedMs} ms that it sees volume ${volume} at ${bytes} bytes; ` +
        'is tideline\'s agent running on the destination host, with the same mailbox?',
    );
  }
}
