import { spawn } from 'node:child_process';
import { CommandFailedError } from '../errors.js';
import { acceptedResult, DEFAULT_COMMAND_TIMEOUT_MS, type Runner } from './command-contract.js';

/**
 * The runner for a short CLI command whose whole time an admin waits for,
 * such as `tideline policy show`: it loads only node's own child_process
 * (execa takes about 170 ms to load here, several times what the whole
 * command should take). Same contract as execaRunner: argument array, never a
 * shell; a timeout, after which the command is killed; accepted exit codes;
 * one trailing newline stripped. The agent and the SPM keep execa, whose
 * pipelines and richer errors they use.
 */
export const lightRunner: Runner = (command, args, options = {}) =>
  new Promise((resolve, reject) => {
    const timeoutMs = options.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
    const child = spawn(command, [...args], {
      stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      cwd: options.cwd,
      env: options.env ? { ...process.env, ...options.env } : process.env,
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let failure: CommandFailedError | undefined;
    const timer = setTimeout(() => {
      failure = new CommandFailedError(command, args, `timed out after ${timeoutMs} ms`);
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout?.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.on('error', (error: NodeJS.ErrnoException) => {
      failure ??= new CommandFailedError(command, args, error.code === 'ENOENT' ? 'could not start: no such command' : error.message, { cause: error });
    });
    child.on('close', (exitCode, signal) => {
      clearTimeout(timer);
      if (failure) return reject(failure);
      if (exitCode === null) return reject(new CommandFailedError(command, args, `killed by ${signal ?? 'a signal'}`));
      try {
        resolve(acceptedResult(command, args, { stdout: withoutFinalNewline(Buffer.concat(stdout).toString('utf8')), stderr: withoutFinalNewline(Buffer.concat(stderr).toString('utf8')), exitCode }, options.acceptExitCodes));
      } catch (error) {
        reject(error);
      }
    });
    if (options.input !== undefined) {
      // A command that exits without reading its input must not fail the run with EPIPE.
      child.stdin?.on('error', () => undefined);
      child.stdin?.end(options.input);
    }
  });

function withoutFinalNewline(text: string): string {
  if (text.endsWith('\r\n')) return text.slice(0, -2);
  return text.endsWith('\n') ? text.slice(0, -1) : text;
}
