/**
 * Base of every error tideline raises on purpose. `code` is stable across
 * releases (scripts and status output match on it); the message says what
 * failed, on what, and what to do.
 */
export abstract class TideError extends Error {
  abstract readonly code: string;

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }

  toJSON(): { code: string; message: string } {
    return { code: this.code, message: this.message };
  }
}

/** Configuration or a command-line value failed validation at the edge. */
export class InvalidConfigError extends TideError {
  readonly code = 'invalid-config';
}

/** An external command failed, timed out, or could not be started. */
export class CommandFailedError extends TideError {
  readonly code = 'command-failed';

  constructor(
    readonly command: string,
    readonly args: readonly string[],
    readonly detail: string,
    options?: ErrorOptions,
  ) {
    super(`${command} ${args.join(' ')} failed: ${detail}`, options);
  }
}

export function errorCode(error: unknown): string {
  return error instanceof TideError ? error.code : 'internal';
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
