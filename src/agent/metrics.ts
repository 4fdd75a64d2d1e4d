import type http from 'node:http';
import { serveMetrics } from '../metrics/server.js';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { collectProcessMetrics } from '../metrics/process-metrics.js';
import type { MonitorEvents, VmStatus } from '../monitor/vm-monitor.js';

/** Prometheus metrics of the agent, fed by monitor events and status snapshots. */
export class AgentMetrics {
  readonly registry = new Registry();
  private readonly extensions = new Counter({ name: 'tideline_extensions_total', help: 'Volume extensions completed', labelNames: ['vm', 'drive'], registers: [this.registry] });
  private readonly failures = new Counter({ name: 'tideline_extension_failures_total', help: 'Extensions that failed or were refused', labelNames: ['vm', 'drive', 'code'], registers: [this.registry] });
  private readonly pauses = new Counter({ name: 'tideline_enospc_pauses_total', help: 'Times a VM paused because a write found no space', labelNames: ['vm'], registers: [this.registry] });
  private readonly latency = new Histogram({
    name: 'tideline_extension_seconds',
    help: 'From the decision to extend to the new size visible on this host',
    labelNames: ['vm'],
    buckets: [0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10],
    registers: [this.registry],
  });
  private readonly pausedSeconds = new Histogram({ name: 'tideline_enospc_pause_seconds', help: 'How long ENOSPC pauses lasted until tideline resumed the VM', labelNames: ['vm'], buckets: [0.05, 0.1, 0.3, 1, 3, 10, 30], registers: [this.registry] });
  private readonly volumeBytes = new Gauge({ name: 'tideline_volume_bytes', help: 'Size of the thin volume as this host sees it', labelNames: ['vm', 'drive', 'volume'], registers: [this.registry] });
  private readonly highWater = new Gauge({ name: 'tideline_high_water_bytes', help: 'Highest offset the image has written on its volume', labelNames: ['vm', 'drive', 'volume'], registers: [this.registry] });

  observe(source: { on<K extends keyof MonitorEvents>(event: K, listener: (...args: MonitorEvents[K]) => void): unknown }): void {
    source.on('extended', (event) => {
      this.extensions.inc({ vm: event.vm, drive: event.drive });
      this.latency.observe({ vm: event.vm }, event.latencyMs / 1000);
    });
    source.on('extension-failed', (event) => this.failures.inc({ vm: event.vm, drive: event.drive, code: event.code }));
    source.on('paused', (event) => this.pauses.inc({ vm: event.vm }));
    source.on('resumed', (event) => this.pausedSeconds.observe({ vm: event.vm }, event.pausedMs / 1000));
  }

  updateGauges(vms: readonly VmStatus[]): void {
    for (const vm of vms) {
      for (const drive of vm.drives) {
        const labels = { vm: vm.vm, drive: drive.drive, volume: drive.volume };
        this.volumeBytes.set(labels, drive.volumeBytes);
        this.highWater.set(labels, drive.highWaterBytes);
      }
    }
  }

  /** Serves /metrics; loopback by default, since the numbers name VMs and volumes. */
  listen(host: string, port: number, refresh: () => void): Promise<http.Server> {
    collectProcessMetrics(this.registry, 'tideline_agent_');
    return serveMetrics(this.registry, host, port, refresh);
  }
}
