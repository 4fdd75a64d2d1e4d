import { execa, type ExecaError } from 'execa';
import { CommandFailedError } from '../errors.js';
import { acceptedResult, DEFAULT_COMMAND_TIMEOUT_MS, type Runner } from './command-contract.js';

export { acceptedResult, DEFAULT_COMMAND_TIMEOUT_MS, type RunOptions, type RunResult, type Runner } from './command-contract.js';

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
