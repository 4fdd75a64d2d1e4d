import { execa, type ExecaError } from 'execa';
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

export const execaRunner: Runner = async (command, args, options = {}) => {
  try {
    const result = await execa(command, [...args], {
      timeout: options.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS,
      input: options.input,
      cwd: options.cwd,
      env: options.env,
      reject: false,
      stripFinalNewline: true,
      encoding: 'utf8',
    });
    if (result.timedOut) {
      throw new CommandFailedError(command, args, `timed out after ${options.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS} ms`);
    }
    if (result.failed && result.exitCode === undefined) {
      throw new CommandFailedError(command, args, result.shortMessage ?? 'could not start', { cause: result.cause });
    }
    return acceptedResult(command, args, { stdout: String(result.stdout), stderr: String(result.stderr), exitCode: result.exitCode ?? -1 }, options.acceptExitCodes);
  } catch (error) {
    if (error instanceof CommandFailedError) throw error;
    const execaError = error as ExecaError;
    throw new CommandFailedError(command, args, execaError.shortMessage ?? String(error), { cause: error });
  }
};

/** The result, unless its exit code is neither 0 nor one the caller accepts: then the failure, with what the command said. */
export function acceptedResult(command: string, args: readonly string[], result: RunResult, acceptExitCodes: readonly number[] = []): RunResult {
  if (result.exitCode === 0 || acceptExitCodes.includes(result.exitCode)) return result;
  const detail = (result.stderr || result.stdout || `exit code ${result.exitCode}`).trim();
  throw new CommandFailedError(command, args, `exit code ${result.exitCode}: ${detail}`);
}

/** `producer | consumer` without a shell: execa pipes one process into the other. */
export async function runPipeline(
  producer: readonly [string, readonly string[]],
  consumer: readonly [string, readonly string[]],
  timeoutMs = DEFAULT_COMMAND_TIMEOUT_MS,
): Promise<void> {
  const [producerCommand, producerArgs] = producer;
  const [consumerCommand, consumerArgs] = consumer;
  try {
    await execa(producerCommand, [...producerArgs], { timeout: timeoutMs, buffer: false }).pipe(consumerCommand, [...consumerArgs], { timeout: timeoutMs });
  } catch (error) {
    const execaError = error as ExecaError;
    throw new CommandFailedError(`${producerCommand} | ${consumerCommand}`, [...producerArgs, '|', ...consumerArgs], execaError.shortMessage ?? String(error), { cause: error });
  }
}
