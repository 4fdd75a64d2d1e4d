import { TideError } from '../errors.js';

/** The guest agent did not answer, answered out of turn, or its channel broke. */
export class GuestAgentError extends TideError {
  readonly code = 'guest-agent';
}

/** The guest agent answered a command with an error of its own (QGA error class and description). */
export class GuestAgentCommandError extends TideError {
  readonly code = 'guest-agent-command';

  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly description: string,
  ) {
    super(`guest agent refused ${command}: ${errorClass}: ${description}`);
  }
}
