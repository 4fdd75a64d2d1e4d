import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { silentLogger } from '../log/logger.js';
import { systemClock, type Clock, type TimerHandle } from '../util/clock.js';
import { QmpDisconnectedError } from './errors.js';
import type { Garbage } from './framing.js';
import type { QmpEvent, QmpGreeting } from './messages.js';
import { HANDSHAKE_TIMEOUT_MS, QmpSession } from './session.js';

export const DEFAULT_COMMAND_TIMEOUT_MS = 5_000;
/** First retry soon (QEMU restarting takes ~1 s), then back off so a gone VM costs nothing. */
export const RECONNECT_INITIAL_MS = 100;
export const RECONNECT_MAX_MS = 5_000;

export interface QmpClientOptions {
  clock?: Clock;
  logger?: Logger;
  commandTimeoutMs?: number;
  handshakeTimeoutMs?: number;
  reconnectInitialMs?: number;
  reconnectMaxMs?: number;
}

export interface ClientEvents {
  event: [QmpEvent];
  connected: [QmpGreeting];
  disconnected: [Error | undefined];
  garbage: [Garbage];
}

/**
 * A QMP client that stays connected: when QEMU closes the socket (restart,
 * crash, another client's turn) it reconnects with exponential backoff and
 * says so with 'disconnected' / 'connected', so users can resynchronise.
 */
export class QmpClient extends EventEmitter<ClientEvents> {
  private session: QmpSession | undefined;
  private reconnectTimer: TimerHandle | undefined;
  private backoffMs: number;
  private stopped = false;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly commandTimeoutMs: number;
  private connectWaiters: Array<() => void> = [];

  constructor(readonly socketPath: string, private readonly options: QmpClientOptions = {}) {
    super();
    this.clock = options.clock ?? systemClock;
    this.logger = (options.logger ?? silentLogger).child({ qmp: socketPath });
    this.commandTimeoutMs = options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
    this.backoffMs = options.reconnectInitialMs ?? RECONNECT_INITIAL_MS;
  }

  get connected(): boolean {
    return this.session?.isOpen ?? false;
  }

  /** Connects, retrying with backoff; resolves once the first session is up. */
  start(): Promise<void> {
    this.stopped = false;
    const ready = this.waitConnected();
    void this.attempt();
    return ready;
  }

  /** Resolves when a session is up (immediately if one is). */
  waitConnected(): Promise<void> {
    if (this.connected) return Promise.resolve();
    return new Promise((resolve) => this.connectWaiters.push(resolve));
  }

  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = this.commandTimeoutMs): Promise<T> {
    if (!this.session?.isOpen) return Promise.reject(new QmpDisconnectedError(command, this.socketPath));
    return this.session.execute<T>(command, args, timeoutMs);
  }

  close(): void {
    this.stopped = true;
    this.reconnectTimer?.cancel();
    this.reconnectTimer = undefined;
    this.session?.close();
    this.session = undefined;
  }

  private async attempt(): Promise<void> {
    this.reconnectTimer = undefined;
    if (this.stopped) return;
    try {
      const { session, greeting } = await QmpSession.open(this.socketPath, this.clock, this.options.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS);
      if (this.stopped) {
        session.close();
        return;
      }
      this.session = session;
      this.backoffMs = this.options.reconnectInitialMs ?? RECONNECT_INITIAL_MS;
      session.on('event', (event) => this.emit('event', event));
      session.on('garbage', (garbage) => {
        this.logger.warn({ line: garbage.line, reason: garbage.reason }, 'skipped a QMP line that is not a valid message');
        this.emit('garbage', garbage);
      });
      session.once('close', (error) => this.lost(session, error));
      this.logger.info({ qemu: greeting.version?.qemu }, 'QMP connected');
      this.emit('connected', greeting);
      const waiters = this.connectWaiters;
      this.connectWaiters = [];
      for (const resolve of waiters) resolve();
    } catch (error) {
      this.logger.debug({ err: error, retryInMs: this.backoffMs }, 'QMP connect failed');
      this.scheduleReconnect();
    }
  }

  private lost(session: QmpSession, error: Error | undefined): void {
    if (this.session !== session) return;
    this.session = undefined;
    if (this.stopped) return;
    this.logger.warn({ err: error }, 'QMP connection lost; reconnecting');
    this.emit('disconnected', error);
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.reconnectTimer) return;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.options.reconnectMaxMs ?? RECONNECT_MAX_MS);
    this.reconnectTimer = this.clock.setTimeout(() => void this.attempt(), delay);
  }
}

/** One QMP session for a one-off job: connects (retrying while QEMU comes up), runs `work`, closes. */
export async function withQmpSession<T>(socketPath: string, work: (client: QmpClient) => Promise<T>, options: QmpClientOptions = {}): Promise<T> {
  const client = new QmpClient(socketPath, options);
  try {
    await client.start();
    return await work(client);
  } finally {
    client.close();
  }
}
