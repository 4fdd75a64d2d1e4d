import { errorCode, errorMessage, InvalidConfigError, TideError } from '../errors.js';

/** Exit codes: 1 = the job failed, 2 = the command line or configuration was wrong. */
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

export function reportFailure(error: unknown): void {
  const code = errorCode(error);
  process.stderr.write(`tideline: ${errorMessage(error)} [${code}]\n`);
  if (!(error instanceof TideError) && error instanceof Error && error.stack && process.env.TIDELINE_DEBUG) process.stderr.write(`${error.stack}\n`);
  process.exitCode = error instanceof InvalidConfigError ? EXIT_USAGE : EXIT_FAILED;
}

/** Runs `work` until SIGINT/SIGTERM, which abort its signal instead of killing the process mid-cleanup. */
export function abortOnSignals(): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const onSignal = () => controller.abort();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: controller.signal,
    dispose: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}
