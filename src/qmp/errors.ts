import { TideError } from '../errors.js';

/** QEMU answered a command with an error reply. */
export class QmpCommandError extends TideError {
  readonly code = 'qmp-command-error';

  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly description: string,
    readonly socketPath: string,
  ) {
    super(`QMP ${command} on ${socketPath} failed: ${errorClass}: ${description}`);
  }
}

/** No reply within the command's timeout; a late reply is dropped. */
export class QmpTimeoutError extends TideError {
  readonly code = 'qmp-timeout';

  constructor(readonly command: string, readonly timeoutMs: number, readonly socketPath: string) {
    super(`QMP ${command} on ${socketPath} got no reply within ${timeoutMs} ms; QEMU may be hung or overloaded`);
  }
}

/** The socket closed (QEMU exited or restarted) while the command waited, or before it was sent. */
export class QmpDisconnectedError extends TideError {
  readonly code = 'qmp-disconnected';

  constructor(readonly command: string, readonly socketPath: string, options?: ErrorOptions) {
    super(`QMP ${command} on ${socketPath}: connection to QEMU closed; the client reconnects by itself, retry then`, options);
  }
}

/** The peer does not speak QMP as expected (no greeting, failed capabilities negotiation). */
export class QmpProtocolError extends TideError {
  readonly code = 'qmp-protocol';

  constructor(readonly socketPath: string, detail: string, options?: ErrorOptions) {
    super(`QMP on ${socketPath}: ${detail}; is this socket a QEMU QMP monitor (-qmp unix:PATH,server=on,wait=off)?`, options);
  }
}
