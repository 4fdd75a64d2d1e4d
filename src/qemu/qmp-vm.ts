import type { MonitorInput, RunState, VmControl } from '../monitor/ports.js';
import type { QmpClient } from '../qmp/client.js';
import type { QmpEvent } from '../qmp/messages.js';
import { changedLayers, describeDrives, highWaterMarks, noSpaceDrives, type BlockInfo, type BlockStats, type QemuDrive } from './block-info.js';

/**
 * query-migrate's states while a migration job runs (qapi/migration.json
 * MigrationStatus). 'completed' is left out: a destination reports its
 * incoming migration that way for the rest of its life, and a source that
 * completed is in run state 'postmigrate', which the monitor sees first.
 */
const OUTGOING_MIGRATION_UNDER_WAY = new Set(['setup', 'active', 'pre-switchover', 'device', 'wait-unplug', 'postcopy-active', 'postcopy-paused', 'postcopy-recover-setup', 'postcopy-recover', 'cancelling']);

/**
 * A QEMU process seen through QMP as the monitor needs it: thresholds, high
 * water, run state, resume; and QMP events translated into monitor inputs.
 */
export class QmpVm implements VmControl {
  private drives: QemuDrive[] = [];

  /** `onChainChanged`: a drive's active layer is no longer the node watched (a snapshot put one on top, a commit pivoted). */
  constructor(
    private readonly client: QmpClient,
    private readonly onChainChanged?: (drive: string) => void,
  ) {}

  /** Reads the block graph; call again after a reconnect (QEMU may have restarted). */
  async discover(): Promise<QemuDrive[]> {
    const [blocks, stats] = await Promise.all([
      this.client.execute<BlockInfo[]>('query-block'),
      this.client.execute<BlockStats[]>('query-blockstats'),
    ]);
    this.drives = describeDrives(blocks, stats);
    return this.drives;
  }

  async setWriteThreshold(drive: string, offsetBytes: number): Promise<void> {
    await this.client.execute('block-set-write-threshold', { 'node-name': this.find(drive).protocolNode, 'write-threshold': offsetBytes });
  }

  async highWaterMarks(): Promise<Map<string, number>> {
    const stats = await this.client.execute<BlockStats[]>('query-blockstats');
    for (const drive of changedLayers(this.drives, stats)) this.onChainChanged?.(drive);
    return highWaterMarks(this.drives, stats);
  }

  async runState(): Promise<RunState> {
    const { status } = await this.client.execute<{ status: string }>('query-status');
    return status;
  }

  async noSpaceDrives(): Promise<Set<string>> {
    return noSpaceDrives(this.drives, await this.client.execute<BlockInfo[]>('query-block'));
  }

  async resume(): Promise<void> {
    await this.client.execute('cont');
  }

  async migratingOut(): Promise<boolean> {
    const { status } = await this.client.execute<{ status?: string }>('query-migrate');
    return status !== undefined && OUTGOING_MIGRATION_UNDER_WAY.has(status);
  }

  async cancelMigration(): Promise<void> {
    await this.client.execute('migrate_cancel');
  }

  /** Turns a QMP event into what the monitor understands, or undefined for events it does not care about. */
  translate(event: QmpEvent): MonitorInput | undefined {
    const data = event.data;
    switch (event.event) {
      case 'BLOCK_WRITE_THRESHOLD': {
        const drive = this.drives.find((candidate) => candidate.protocolNode === data['node-name']);
        if (!drive) return undefined;
        const highWaterAtLeast = Number(data['write-threshold'] ?? 0) + Number(data['amount-exceeded'] ?? 0);
        return { type: 'threshold', drive: drive.drive, highWaterAtLeast };
      }
      case 'BLOCK_IO_ERROR': {
        const drive = this.drives.find(
          (candidate) => candidate.formatNode === data['node-name'] || (data.device !== '' && candidate.drive === data.device),
        );
        if (!drive) return undefined;
        const reason = typeof data.reason === 'string' ? data.reason : undefined;
        return { type: 'io-error', drive: drive.drive, noSpace: data.nospace === true, action: String(data.action ?? ''), ...(reason ? { reason } : {}) };
      }
      case 'STOP':
        return { type: 'stopped' };
      case 'RESUME':
        return { type: 'resumed' };
      default:
        return undefined;
    }
  }

  private find(drive: string): QemuDrive {
    const found = this.drives.find((candidate) => candidate.drive === drive);
    if (!found) throw new Error(`drive ${drive} is not among the VM's block devices`);
    return found;
  }
}
