import { execa, type ResultPromise } from 'execa';
import { builtCli } from './built-cli.js';
import { until } from './watch.js';

/** A `tideline` subcommand run as its own process (the built command, as it ships), with its JSON log lines collected. */
export class TidelineProcess {
  readonly child: ResultPromise;
  readonly events: Array<Record<string, unknown>> = [];
  private stderr = '';

  /** `options.prefix`: a command that runs the rest in another host's namespaces (nsenter, which execs: the PID stays the process's own). */
  constructor(readonly name: string, args: string[], options: { prefix?: string[] } = {}) {
    const [command, ...prefixArgs] = [...(options.prefix ?? []), 'node'];
    this.child = execa(command!, [...prefixArgs, builtCli(), ...args], { reject: false, env: { TIDELINE_LOG_LEVEL: process.env.TIDELINE_TEST_LOG_LEVEL ?? 'info' } });
    this.child.stderr?.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString();
      const lines = this.stderr.split('\n');
      this.stderr = lines.pop() ?? '';
      for (const line of lines) {
        try {
          this.events.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          this.events.push({ msg: line });
        }
      }
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  logged(message: string): Array<Record<string, unknown>> {
    return this.events.filter((event) => event.msg === message);
  }

  async waitFor(message: string, timeoutMs: number, count = 1): Promise<void> {
    await until(() => this.logged(message).length >= count, timeoutMs, () => `${this.name} to log "${message}"; its last lines:\n${this.transcript()}${this.stderr ? `\n${this.stderr}` : ''}`);
  }

  transcript(): string {
    return this.events.slice(-15).map((event) => JSON.stringify(event)).join('\n');
  }

  /** Kills this process (by its own PID) and waits for it. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    this.child.kill(signal);
    await this.child;
  }
}
