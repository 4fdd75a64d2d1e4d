import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { collectProcessMetrics } from '../metrics/process-metrics.js';
import type { DoorbellListener } from '../doorbell/doorbell.js';
import type { SpmService } from './spm-service.js';

/**
 * Prometheus metrics of the SPM, kept across its terms (each term is a new
 * SpmService): what it served and refused, how long requests took, unreadable
 * slots per host (every one, where the log says it once a minute), and reply
 * slots written again for hosts that asked again.
 */
export class SpmMetrics {
  readonly registry = new Registry();
  private readonly requests = new Counter({ name: 'tideline_spm_requests_total', help: 'Requests carried out, by operation and reply status (ok or the refusal code)', labelNames: ['operation', 'status'], registers: [this.registry] });
  private readonly seconds = new Histogram({
    name: 'tideline_spm_request_seconds',
    help: 'From reading a request to its reply being ready (LVM command included)',
    labelNames: ['operation'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60],
    registers: [this.registry],
  });
  private readonly corruptSlots = new Counter({ name: 'tideline_spm_corrupt_slots_total', help: 'Unreadable request slots read, by host', labelNames: ['host'], registers: [this.registry] });
  private readonly rewritten = new Counter({ name: 'tideline_spm_replies_rewritten_total', help: 'Reply slots written again because their host asked again (a lost or unreadable reply)', labelNames: ['host'], registers: [this.registry] });
  private readonly quietWakeUps = new Counter({
    name: 'tideline_spm_quiet_wake_ups_total',
    help: "What made the quiet SPM scan every slot: doorbell (a host rang), wake-up-block (a host rewrote it; with doorbells set up, that host's ring did not arrive), full-scan (the slow scan)",
    labelNames: ['cause'],
    registers: [this.registry],
  });
  private readonly doorbellDatagrams = new Gauge({
    name: 'tideline_spm_doorbell_datagrams',
    help: "Datagrams on this term's doorbell: ring (a valid ring for this mailbox) or ignored (anything else); reset at each term",
    labelNames: ['kind'],
    registers: [this.registry],
    // Read when scraped: the listener counts every datagram, this only reports them.
    collect: () => {
      if (!this.doorbell) return;
      this.doorbellDatagrams.set({ kind: 'ring' }, this.doorbell.counts.rings);
      this.doorbellDatagrams.set({ kind: 'ignored' }, this.doorbell.counts.ignored);
    },
  });
  private doorbell: DoorbellListener | undefined;
  private readonly acting = new Gauge({ name: 'tideline_spm_acting', help: '1 while this process holds the lease and serves as SPM', registers: [this.registry] });

  constructor() {
    this.acting.set(0);
  }

  /** The process's own figures, for a process that serves its metrics (src/metrics/process-metrics.ts). */
  collectProcessMetrics(): void {
    collectProcessMetrics(this.registry, 'tideline_spm_process_');
  }

  observe(service: SpmService, doorbell?: DoorbellListener): void {
    this.doorbellDatagrams.reset();
    this.doorbell = doorbell;
    service.on('quiet-wake-up', (event) => this.quietWakeUps.inc({ cause: event.cause }));
    service.on('served', (event) => {
      this.requests.inc({ operation: event.operation, status: event.status });
      this.seconds.observe({ operation: event.operation }, event.ms / 1000);
    });
    service.on('corrupt-slot', (event) => this.corruptSlots.inc({ host: String(event.hostId) }));
    service.on('replies-rewritten', (event) => this.rewritten.inc({ host: String(event.hostId) }));
  }

  setActing(acting: boolean): void {
    this.acting.set(acting ? 1 : 0);
  }
}
