import { execa } from 'execa';
import { fileURLToPath } from 'node:url';

/**
 * Runs a bench module's own measurement in a fresh node process and returns
 * what it printed (one JSON line). Idle CPU of a few tenths of a percent is
 * only measurable in a process that did nothing else before: in the bench's
 * own process, the earlier figures' garbage and V8's background compiling
 * add about as much as what is measured, differently from run to run.
 */
export async function measureInOwnProcess<T>(moduleUrl: string, args: readonly string[], timeoutSeconds: number): Promise<T> {
  const child = await execa(process.execPath, ['--expose-gc', '--import', 'tsx', fileURLToPath(moduleUrl), ...args], { timeout: timeoutSeconds * 1000 });
  return JSON.parse(child.stdout) as T;
}

/** True in the process `measureInOwnProcess` started for this module. */
export function runningAsOwnProcess(moduleUrl: string): boolean {
  return process.argv[1] === fileURLToPath(moduleUrl);
}

/**
 * Collects what the work before an idle measurement left, in the process
 * `measureInOwnProcess` started (it has `gc`): otherwise V8 collects it at
 * some moment of its own, inside one policy's window or another's, and that
 * one-time cost reads as idle CPU.
 */
export function collectGarbageNow(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  gc?.();
}

export function printResult(result: unknown): void {
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
