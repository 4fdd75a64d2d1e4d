import { existsSync } from 'node:fs';
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { errorMessage } from '../../errors.js';
import type { Clock, TimerHandle } from '../../util/clock.js';
import { BACKOFF_INITIAL_MS, BACKOFF_MAX_MS, EVENT_STREAM_ENDED_MESSAGE, type EventStreamEvents, type LibvirtEventSource } from '../event-stream.js';
import { decodeCallbackId, decodeDomainEvent, encodeEventRegister, EventProcedure, FOLLOWED_EVENT_IDS } from './domain-events.js';
import { LibvirtTransportError, RemoteConnection } from './remote-connection.js';
import { localEndpointFor } from './socket-path.js';

/**
 * libvirt's domain events over its RPC socket: one connection of its own,
 * one callback registered per event kind the agent follows, every event
 * decoded as it arrives (domain-events.ts). No process is started and no
 * text parsed; the daemon pushes each event the moment it happens. When the
 * connection ends (libvirtd restarted or stopped) it is opened again with
 * backoff and `restarted` tells the agent to rescan: events may have been
 * missed. `start` rejects with LibvirtTransportError when the socket cannot
 * be used at all; the agent then follows `virsh event` instead.
 */
const OPEN_TIMEOUT_MS = 10_000;

export class RemoteEventStream extends EventEmitter<EventStreamEvents> implements LibvirtEventSource {
  private connection: RemoteConnection | undefined;
  private stopped = false;
  private backoffMs = BACKOFF_INITIAL_MS;
  private timer: TimerHandle | undefined;
  private undecodableSaid = false;

  constructor(
    private readonly uri: string,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private readonly exists: (path: string) => boolean = existsSync,
  ) {
    super();
  }

  /** The first connection and its registrations; rejects when the socket cannot be used. */
  async start(): Promise<void> {
    this.stopped = false;
    await this.connect();
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
    const connection = this.connection;
    this.connection = undefined;
    void connection?.close();
  }

  private async connect(): Promise<void> {
    const endpoint = localEndpointFor(this.uri, this.exists);
    if (!endpoint) throw new LibvirtTransportError(`no local libvirt socket serves ${this.uri}`);
    const connection = await RemoteConnection.open(endpoint.socket, endpoint.name, OPEN_TIMEOUT_MS, {
      keepProcessAlive: false,
      onMessage: (procedure, body) => this.deliver(procedure, body),
    });
    try {
      for (const eventId of FOLLOWED_EVENT_IDS) decodeCallbackId(await connection.call(EventProcedure.connectDomainEventCallbackRegisterAny, encodeEventRegister(eventId)));
    } catch (error) {
      await connection.close();
      throw error;
    }
    if (this.stopped) {
      await connection.close();
      return;
    }
    this.connection = connection;
    this.backoffMs = BACKOFF_INITIAL_MS;
    connection.onClose = (error) => this.lost(error);
    if (!connection.usable) this.lost(new LibvirtTransportError(`libvirt socket ${endpoint.socket} closed at once`));
  }

  private deliver(procedure: number, body: Buffer): void {
    try {
      const event = decodeDomainEvent(procedure, body);
      if (event) this.emit('event', event);
    } catch (error) {
      if (this.undecodableSaid) return;
      this.undecodableSaid = true;
      this.logger.warn({ procedure, err: errorMessage(error) }, 'cannot read an event libvirt sent; it is ignored (the periodic reconcile and safety poll cover what it said)');
    }
  }

  private lost(error: Error): void {
    if (this.stopped) return;
    this.connection = undefined;
    this.logger.warn({ err: errorMessage(error), retryMs: this.backoffMs }, EVENT_STREAM_ENDED_MESSAGE);
    this.retry();
  }

  private retry(): void {
    this.timer = this.clock.setTimeout(() => {
      this.connect().then(
        () => {
          if (!this.stopped) this.emit('restarted');
        },
        (error: unknown) => {
          this.backoffMs = Math.min(BACKOFF_MAX_MS, this.backoffMs * 2);
          this.logger.debug({ err: errorMessage(error), retryMs: this.backoffMs }, 'libvirt event connection not back yet');
          if (!this.stopped) this.retry();
        },
      );
    }, this.backoffMs);
  }
}
