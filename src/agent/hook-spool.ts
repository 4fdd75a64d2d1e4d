import { constants } from 'node:fs';
import { lstat, mkdir, open, readdir, readFile, realpath, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';
import type { HookOutcome } from '../hook/hook.js';
import { AGENT_MARK, encodePrepareReply, parseHookEvent, parsePrepareRequest, PREPARE_SUFFIX, type HookEvent } from './spool-protocol.js';

/** Events arrive in bursts (prepare, start, started...): one rescan covers them all. */
const RESCAN_DELAY_MS = 100;

export type PrepareHandler = (request: { domain: string; xml: string; vg?: string; loopDomain?: string }) => Promise<HookOutcome>;

export class HookSpool {
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** Events taken since the last hand-over, in the order the hook reported them. */
  private pending: HookEvent[] = [];

  private constructor(
    private readonly directory: string,
    private readonly rescan: (events: HookEvent[]) => Promise<void>,
    private readonly logger: Logger,
    private readonly prepare: PrepareHandler | undefined,
  ) {}

  /**
   * Creates the directory (0700: only root's hook writes there) and follows it.
   * With `prepare`, the hook hands this agent its `prepare begin` too.
   */
  static async watch(directory: string, rescan: (events: HookEvent[]) => Promise<void>, logger: Logger, prepare?: PrepareHandler): Promise<HookSpool> {
    await mkdir(directory, { recursive: true, mode: 0o700 });
    // Through realpath once: the hook may name the spool by another path (/var/run for /run), and replies are checked against it.
    const resolved = await realpath(directory);
    const spool = new HookSpool(resolved, rescan, logger, prepare);
    // Events from before this start are covered by the agent's own first scan.
    for (const name of await readdir(resolved)) await rm(path.join(resolved, name), { force: true });
    spool.watcher = watch(resolved, { depth: 0, ignoreInitial: true, ignored: (file) => path.basename(file).startsWith('.') });
    spool.watcher.on('add', (file) => void spool.take(file));
    await new Promise<void>((resolve) => spool.watcher!.once('ready', () => resolve()));
    if (prepare) {
      // Written whole, then renamed into place: the hook never reads half a PID.
      const mark = path.join(resolved, AGENT_MARK);
      await writeFile(`${mark}.new`, `${process.pid}\n`, { mode: 0o600 });
      await rename(`${mark}.new`, mark);
    }
    logger.info({ directory: resolved, prepare: prepare !== undefined }, 'following libvirt hook events');
    return spool;
  }

  private async take(file: string): Promise<void> {
    const text = await readFile(file, 'utf8').catch(() => undefined);
    await rm(file, { force: true });
    if (text === undefined) return;
    if (file.endsWith(PREPARE_SUFFIX)) {
      await this.answerPrepare(file, text);
      return;
    }
    const event = parseHookEvent(text);
    if (!event) {
      this.logger.warn({ file, text: text.slice(0, 200) }, 'ignoring a malformed file in the hook spool');
      return;
    }
    this.logger.info({ vm: event.domain, operation: event.operation, subOperation: event.subOperation }, 'libvirt hook reported a domain event; rescanning');
    this.pending.push(event);
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const events = this.pending;
      this.pending = [];
      this.rescan(events).catch((error: unknown) => this.logger.warn({ err: String(error) }, 'rescan after a hook event failed'));
    }, RESCAN_DELAY_MS);
  }

  private async answerPrepare(file: string, text: string): Promise<void> {
    const request = parsePrepareRequest(text);
    if (!request) {
      this.logger.warn({ file, text: text.slice(0, 200) }, 'ignoring a malformed prepare request in the hook spool');
      return;
    }
    let answer: Parameters<typeof encodePrepareReply>[0];
    if (!this.prepare) {
      answer = { declined: 'this agent does not prepare domains' };
    } else {
      this.logger.info({ vm: request.domain }, "libvirt hook asks to prepare a domain's volumes");
      try {
        answer = { outcome: await this.prepare({ domain: request.domain, xml: request.xml, ...(request.vg ? { vg: request.vg } : {}), ...(request.loopDomain ? { loopDomain: request.loopDomain } : {}) }) };
      } catch (error) {
        this.logger.warn({ vm: request.domain, err: errorMessage(error) }, 'preparing a domain for the hook failed; the hook does it itself');
        answer = { declined: errorMessage(error) };
      }
    }
    await this.reply(request.replyPath, encodePrepareReply(answer));
  }

  /**
   * Only into a FIFO of this directory under a dot name, as the hook makes it:
   * a request file names the path, and the agent runs as root. Opened without
   * blocking: a hook that stopped waiting has closed it, and then nobody reads.
   */
  private async reply(replyPath: string, line: string): Promise<void> {
    const resolved = path.resolve(replyPath);
    const info = await lstat(resolved).catch(() => undefined);
    const directory = await realpath(path.dirname(resolved)).catch(() => '');
    if (directory !== this.directory || !path.basename(resolved).startsWith('.') || !info?.isFIFO()) {
      this.logger.warn({ replyPath }, 'not answering the hook: its reply path is not a FIFO of the hook spool');
      return;
    }
    try {
      const handle = await open(resolved, constants.O_WRONLY | constants.O_NONBLOCK);
      try {
        await handle.write(line);
      } finally {
        await handle.close();
      }
    } catch (error) {
      this.logger.warn({ replyPath, err: errorMessage(error) }, 'the hook stopped waiting before the agent answered; it does the work itself');
    }
  }

  async close(): Promise<void> {
    clearTimeout(this.timer);
    await this.watcher?.close();
    if (!this.prepare) return;
    // Another agent may have started on this spool since: its mark stays.
    const mark = path.join(this.directory, AGENT_MARK);
    if ((await readFile(mark, 'utf8').catch(() => '')).trim() === String(process.pid)) await rm(mark, { force: true });
  }
}
