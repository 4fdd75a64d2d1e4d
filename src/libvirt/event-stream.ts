import { EventEmitter } from 'node:events';
import readline from 'node:readline';
import { execa, type ResultPromise } from 'execa';
import type { Logger } from 'pino';
import type { Clock, TimerHandle } from '../util/clock.js';
import { parseEventLine, type LibvirtEvent } from './events.js';

/**
 * libvirt's events, from one long-lived `virsh event --all --loop`. When it
 * ends (libvirtd restarted or stopped) it is started again with backoff, and
 * `restarted` tells the agent to rescan: events may have been missed.
 */
export interface EventStreamEvents {
  event: [LibvirtEvent];
  restarted: [];
}

export const EVENT_STREAM_ENDED_MESSAGE = 'libvirt event stream ended; reconnecting';

/** Where the agent's libvirt events come from: libvirtd's socket (remote/remote-event-stream.ts) or `virsh event`. */
export interface LibvirtEventSource extends EventEmitter<EventStreamEvents> {
  stop(): void;
}

/** Reconnecting after libvirtd went away: at once-ish, then doubling up to 5 s while it stays away (both event sources). */
export const BACKOFF_INITIAL_MS = 250;
export const BACKOFF_MAX_MS = 5_000;

export class LibvirtEventStream extends EventEmitter<EventStreamEvents> implements LibvirtEventSource {
  private child: ResultPromise | undefined;
  private stopped = false;
  private backoffMs = BACKOFF_INITIAL_MS;
  private timer: TimerHandle | undefined;
  private started = false;

  constructor(
    private readonly uri: string,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {
    super();
  }

  start(): void {
    this.stopped = false;
    this.spawn();
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
    this.child?.kill('SIGTERM');
  }

  private spawn(): void {
    const child = execa('virsh', ['-c', this.uri, 'event', '--all', '--loop', '--timestamp'], { reject: false, stdin: 'ignore', buffer: false });
    this.child = child;
    const spawnedAt = this.clock.now();
    if (this.started) this.emit('restarted');
    this.started = true;
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      this.backoffMs = BACKOFF_INITIAL_MS;
      const event = parseEventLine(line);
      if (event) this.emit('event', event);
      else if (line.trim()) this.logger.debug({ line }, 'unrecognised virsh event line');
    });
    void child.then((result) => {
      if (this.stopped) return;
      // A stream that lived a while ended for a reason (libvirtd restart): retry at once; one that failed at start backs off.
      if (this.clock.now() - spawnedAt > BACKOFF_MAX_MS) this.backoffMs = BACKOFF_INITIAL_MS;
      this.logger.warn({ exitCode: result.exitCode, retryMs: this.backoffMs }, EVENT_STREAM_ENDED_MESSAGE);
      this.timer = this.clock.setTimeout(() => this.spawn(), this.backoffMs);
      this.backoffMs = Math.min(BACKOFF_MAX_MS, this.backoffMs * 2);
    });
  }
}
