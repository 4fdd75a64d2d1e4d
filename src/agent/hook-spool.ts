import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import type { Logger } from 'pino';

/**
 * The libvirt hook's way to tell the agent about a domain event without
 * starting node: the shell hook writes domain, operation and sub-operation,
 * one per line (a domain name may hold spaces, never a newline), into a file
 * of this directory (written under a dot name, then renamed, so a file
 * that appears is whole), and the agent rescans. libvirtd waits for the hook on
 * every event; a write and a rename cost a few milliseconds, a node start
 * more than a hundred.
 */
export const DEFAULT_HOOK_SPOOL = '/run/tideline/hook-events';

/** Events arrive in bursts (prepare, start, started...): one rescan covers them all. */
const RESCAN_DELAY_MS = 100;

export interface HookEvent {
  domain: string;
  operation: string;
  subOperation: string;
}

/** One spool file's text; undefined for anything that is not three newline-terminated lines. */
export function parseHookEvent(text: string): HookEvent | undefined {
  const fields = text.split('\n');
  if (fields.length !== 4 || fields[3] !== '') return undefined;
  const [domain, operation, subOperation] = fields as [string, string, string];
  return domain && operation ? { domain, operation, subOperation } : undefined;
}

export class HookSpool {
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly directory: string,
    private readonly rescan: () => Promise<void>,
    private readonly logger: Logger,
  ) {}

  /** Creates the directory (0700: only root's hook writes there) and follows it. */
  static async watch(directory: string, rescan: () => Promise<void>, logger: Logger): Promise<HookSpool> {
    await mkdir(directory, { recursive: true, mode: 0o700 });
    const spool = new HookSpool(directory, rescan, logger);
    // Events from before this start are covered by the agent's own first scan.
    for (const name of await readdir(directory)) await rm(path.join(directory, name), { force: true });
    spool.watcher = watch(directory, { depth: 0, ignoreInitial: true, ignored: (file) => path.basename(file).startsWith('.') });
    spool.watcher.on('add', (file) => void spool.take(file));
    await new Promise<void>((resolve) => spool.watcher!.once('ready', () => resolve()));
    logger.info({ directory }, 'following libvirt hook events');
    return spool;
  }

  private async take(file: string): Promise<void> {
    const text = await readFile(file, 'utf8').catch(() => undefined);
    await rm(file, { force: true });
    if (text === undefined) return;
    const event = parseHookEvent(text);
    if (!event) {
      this.logger.warn({ file, text: text.slice(0, 200) }, 'ignoring a malformed file in the hook spool');
      return;
    }
    this.logger.info({ vm: event.domain, operation: event.operation, subOperation: event.subOperation }, 'libvirt hook reported a domain event; rescanning');
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.rescan().catch((error: unknown) => this.logger.warn({ err: String(error) }, 'rescan after a hook event failed'));
    }, RESCAN_DELAY_MS);
  }

  async close(): Promise<void> {
    clearTimeout(this.timer);
    await this.watcher?.close();
  }
}
