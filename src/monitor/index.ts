export { VmMonitor, type VmMonitorOptions, type VmStatus, type MonitorEvents, DEFAULT_POLL_INTERVAL_MS, DEFAULT_RETRY_DELAY_MS } from './vm-monitor.js';
export { DriveState, type DriveConfig, type DriveStatus, type DrivePhase } from './drive-state.js';
export { ExtensionPolicy, DEFAULT_POLICY, OVIRT_CHUNK_BYTES, OVIRT_FREE_TARGET_BYTES, type PolicySettings } from './policy.js';
export { qcow2FullyAllocatedBytes, DEFAULT_CLUSTER_BYTES } from './qcow2-capacity.js';
export { CapReachedError, ExtensionTimeoutError } from './errors.js';
export type { Extender, VmControl, MonitorInput, RunState } from './ports.js';
