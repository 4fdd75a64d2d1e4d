import { CommandFailedError } from '../errors.js';

/**
 * The one way tideline runs external commands: argument arrays (never a shell
 * string), always a timeout. Injected, so unit tests record what would run.
 */
export interface RunOptions {
  timeoutMs?: number;
  input?: string | Uint8Array;
  /** Exit codes that are answers, not failures (e.g. `lvs` on a missing LV). */
  acceptExitCodes?: readonly number[];
  cwd?: string;
  /** Added to the environment. */
  env?: Record<string, string>;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export type Runner = (command: string, args: readonly string[], options?: RunOptions) => Promise<RunResult>;

export const DEFAULT_COMMAND_TIMEOUT_MS = 30_000;

/** The result, unless its exit code is neither 0 nor one the caller accepts: then the failure, with what the command said. */
export function acceptedResult(command: string, args: readonly string[], result: RunResult, acceptExitCodes: readonly number[] = []): RunResult {
  if (result.exitCode === 0 || acceptExitCodes.includes(result.exitCode)) return result;
  const detail = (result.stderr || result.stdout || `exit code ${result.exitCode}`).trim();
  throw new CommandFailedError(command, args, `exit code ${result.exitCode}: ${detail}`);
}

