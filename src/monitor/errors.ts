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

  /**
   * `lastView`: the destination that was up (it announced the volume
   * incoming) and the size it last saw; undefined when no host ever
   * announced it, so no agent on the destination follows this mailbox.
   */
  constructor(readonly volume: string, readonly bytes: number, readonly waitedMs: number, readonly lastView?: { hostId: number; viewBytes: number }) {
    super(
      lastView
        ? `migration destination host ${lastView.hostId} announced volume ${volume} incoming but still sees it at ${lastView.viewBytes} bytes, not ${bytes}, after ${waitedMs} ms; ` +
            'its agent cannot refresh the volume: check its storage path and its log'
        : `no host announced volume ${volume} incoming within ${waitedMs} ms, so no tideline agent on the destination host follows this mailbox; ` +
            'start tideline-agent there with the same mailbox (the hook on a destination with tideline installed refuses such a migration at its start)',
    );
  }
}
