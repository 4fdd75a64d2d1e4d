import { setTimeout as sleep } from 'node:timers/promises';
import { CommandFailedError } from '../errors.js';
import path from 'node:path';
import { acceptedResult, DEFAULT_COMMAND_TIMEOUT_MS, type Runner, type RunOptions, type RunResult } from '../util/runner.js';
import type { GuestAgentClient } from './client.js';
import { decodeExecStarted, decodeExecStatus } from './protocol.js';

/**
 * tideline's Runner, carried out inside a guest by its QEMU guest agent
 * (`guest-exec`, then `guest-exec-status` until the process exited). Commands
 * stay argument arrays end to end. The guest's own `timeout` ends a command
 * that overruns, so nothing is left running in the guest; the host gives up a
 * little later in case the guest itself is stuck.
 *
 * A guest whose userland is busybox prefers its own applets when one applet
 * (`timeout`) starts another program by name, so `blkdiscard` would be
 * busybox's and not util-linux's. Each command is therefore looked up once in
 * the guest's PATH (`which`) and started by its full path.
 */
export interface GuestRunnerOptions {
  /** The guest's PATH: the agent starts commands with exactly this environment. */
  path?: string;
  /** How often the host asks whether a command has exited. */
  pollMs?: number;
}

const GUEST_TIMEOUT = '/bin/timeout';
const GUEST_WHICH = '/bin/which';
const DEFAULT_GUEST_PATH = '/sbin:/usr/sbin:/bin:/usr/bin';
const DEFAULT_POLL_MS = 2;
/** Time for the agent to report a command its guest-side timeout already ended. */
const HOST_GRACE_MS = 5_000;
const REQUEST_TIMEOUT_MS = 10_000;

export function guestRunner(client: GuestAgentClient, options: GuestRunnerOptions = {}): Runner {
  const pollMs = options.pollMs ?? DEFAULT_POLL_MS;
  const guestPath = options.path ?? DEFAULT_GUEST_PATH;
  const fullPaths = new Map<string, string>();

  const execute = async (program: string, args: readonly string[], runOptions: RunOptions): Promise<RunResult> => {
    const timeoutMs = runOptions.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
    const env = [`PATH=${guestPath}`, 'HOME=/root', ...Object.entries(runOptions.env ?? {}).map(([key, value]) => `${key}=${value}`)];
    const input = runOptions.input === undefined ? undefined : Buffer.from(runOptions.input).toString('base64');
    const started = performance.now();
    const pid = decodeExecStarted(
      await client.request(
        'guest-exec',
        { path: GUEST_TIMEOUT, arg: [String(Math.max(1, Math.ceil(timeoutMs / 1000))), program, ...args], env, 'capture-output': true, ...(input === undefined ? {} : { 'input-data': input }) },
        REQUEST_TIMEOUT_MS,
      ),
    );
    const command = path.basename(program);
    for (;;) {
      const status = decodeExecStatus(await client.request('guest-exec-status', { pid }, REQUEST_TIMEOUT_MS));
      if (status.exited) {
        if (status.signal !== undefined) throw new CommandFailedError(command, args, `ended by signal ${status.signal} in the guest (timed out after ${timeoutMs} ms?)`);
        return acceptedResult(command, args, { stdout: status.stdout.replace(/\n$/, ''), stderr: status.stderr.replace(/\n$/, ''), exitCode: status.exitCode ?? -1 }, runOptions.acceptExitCodes);
      }
      if (performance.now() - started > timeoutMs + HOST_GRACE_MS) throw new CommandFailedError(command, args, `timed out after ${timeoutMs} ms (the guest did not report it ended)`);
      await sleep(pollMs);
    }
  };

  const resolve = async (command: string): Promise<string> => {
    if (command.includes('/')) return command;
    const known = fullPaths.get(command);
    if (known) return known;
    const found = await execute(GUEST_WHICH, [command], { acceptExitCodes: [1] });
    if (found.exitCode !== 0 || !found.stdout.startsWith('/')) throw new CommandFailedError(command, [], `not found in the guest's PATH (${guestPath})`);
    fullPaths.set(command, found.stdout.trim());
    return found.stdout.trim();
  };

  return async (command, args, runOptions = {}) => {
    if (runOptions.cwd) throw new CommandFailedError(command, args, 'a working directory cannot be set for a command run through the guest agent');
    return execute(await resolve(command), args, runOptions);
  };
}
