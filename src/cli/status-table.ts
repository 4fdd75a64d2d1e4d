import type { VmStatus } from '../monitor/vm-monitor.js';
import { formatSize } from '../util/sizes.js';
import { formatColumns } from './columns.js';

/** The per-drive table shared by `tideline status` and the lab's live view. */
export function renderStatusTable(vms: readonly VmStatus[], extraColumns: { heading: string; value: (vm: VmStatus) => string } | undefined = undefined): string {
  const head = ['vm', 'drive', 'volume', 'state', 'high-water', 'volume size', 'threshold', 'extensions', 'last ext.', 'pauses', 'write rate'];
  if (extraColumns) head.push(extraColumns.heading);
  const rows: string[][] = [];
  for (const vm of vms) {
    for (const drive of vm.drives) {
      const state = vm.migration === 'left' ? 'migrated away' : vm.migration === 'incoming' ? 'migrating in' : drive.error ? `error: ${drive.error.code}` : vm.pausedForNoSpace && drive.phase === 'ok' ? 'paused-enospc' : drive.phase;
      const row = [
        vm.vm,
        drive.drive,
        drive.volume,
        state,
        formatSize(drive.highWaterBytes),
        formatSize(drive.volumeBytes),
        drive.thresholdBytes === null ? '-' : formatSize(drive.thresholdBytes),
        String(drive.extensions),
        drive.lastExtensionMs === null ? '-' : `${Math.round(drive.lastExtensionMs)} ms`,
        vm.pauses === 0 ? '0' : `${vm.pauses} (${(vm.pausedMsTotal / 1000).toFixed(1)} s)`,
        `${formatSize(drive.writeBytesPerSecond)}/s`,
      ];
      if (extraColumns) row.push(extraColumns.value(vm));
      rows.push(row);
    }
  }
  const errors = vms.flatMap((vm) => vm.drives.filter((drive) => drive.error).map((drive) => `${vm.vm}/${drive.drive}: ${drive.error!.message}`));
  return [formatColumns(head, rows), ...errors].join('\n');
}
