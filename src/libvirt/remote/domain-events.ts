import type { LibvirtEvent } from '../events.js';
import { XdrReader, XdrWriter } from './xdr.js';

/**
 * libvirt's domain events as its RPC delivers them (src/remote/remote_protocol.x):
 * a client registers one callback per event kind, and the daemon then sends
 * each event as an unsolicited message whose procedure number names the kind.
 * Decoded here, purely, into the same values `virsh event` text becomes
 * (events.ts), so the agent cannot tell which way an event came. Procedure
 * and event numbers are never reused or renumbered.
 */
export const EventProcedure = {
  connectDomainEventCallbackRegisterAny: 316,
  connectDomainEventCallbackDeregisterAny: 317,
  lifecycle: 318,
  ioErrorReason: 324,
  diskChange: 327,
  trayChange: 328,
  deviceRemoved: 333,
  blockJob2: 339,
  deviceAdded: 354,
  migrationIteration: 359,
  jobCompleted: 363,
  metadataChange: 379,
  blockThreshold: 385,
} as const;

/** virDomainEventID: what a callback is registered for. */
export const DomainEventId = {
  lifecycle: 0,
  ioErrorReason: 6,
  diskChange: 9,
  trayChange: 10,
  deviceRemoved: 15,
  blockJob2: 16,
  deviceAdded: 19,
  migrationIteration: 20,
  jobCompleted: 21,
  metadataChange: 23,
  blockThreshold: 24,
} as const;

/** Every event the agent follows: lifecycle, thresholds and I/O errors, and whatever says a domain's devices or chain changed. */
export const FOLLOWED_EVENT_IDS: readonly number[] = Object.values(DomainEventId);

/** virDomainEventType and its details, in virsh's words (virshDomainEventToString and friends). */
const LIFECYCLE_EVENTS = ['Defined', 'Undefined', 'Started', 'Suspended', 'Resumed', 'Stopped', 'Shutdown', 'PMSuspended', 'Crashed'];
const LIFECYCLE_DETAILS: Record<string, readonly string[]> = {
  Defined: ['Added', 'Updated', 'Renamed', 'Snapshot'],
  Undefined: ['Removed', 'Renamed'],
  Started: ['Booted', 'Migrated', 'Restored', 'Snapshot', 'Event wakeup'],
  Suspended: ['Paused', 'Migrated', 'I/O Error', 'Watchdog', 'Restored', 'Snapshot', 'API error', 'Post-copy', 'Post-copy Error'],
  Resumed: ['Unpaused', 'Migrated', 'Snapshot', 'Post-copy', 'Post-copy Error'],
  Stopped: ['Shutdown', 'Destroyed', 'Crashed', 'Migrated', 'Saved', 'Failed', 'Snapshot'],
  Shutdown: ['Finished', 'Finished after guest request', 'Finished after host request'],
  PMSuspended: ['Memory', 'Disk'],
  Crashed: ['Panicked', 'Crashloaded'],
};
/** virDomainEventIOErrorAction, as virsh prints it. */
const IO_ERROR_ACTIONS = ['none', 'pause', 'report'];
/** virDomainBlockJobType and virConnectDomainEventBlockJobStatus, as virsh prints them. */
const BLOCK_JOB_TYPES = ['Unknown', 'Block Pull', 'Block Copy', 'Block Commit', 'Active Block Commit', 'Backup'];
const BLOCK_JOB_STATUSES = ['completed', 'failed', 'canceled', 'ready'];
/** VIR_DOMAIN_JOB_STATS_... parameters of a completed job are typed values; only their count matters here. */
const JOB_COMPLETED_PARAMETERS_MAX = 64;
const UUID_BYTES = 16;

export function encodeEventRegister(eventId: number): Buffer {
  // remote_domain dom is an optional pointer: 0 means every domain.
  return new XdrWriter().int(eventId).uint(0).bytes();
}

export function decodeCallbackId(body: Buffer): number {
  return new XdrReader(body).int();
}

function domainName(reader: XdrReader): string {
  const name = reader.string();
  reader.fixedOpaque(UUID_BYTES);
  reader.int();
  return name;
}

function named(table: readonly string[], value: number): string {
  return table[value] ?? String(value);
}

/**
 * One event message (its procedure number and body) as a LibvirtEvent;
 * undefined for a procedure that is no domain event tideline follows.
 * Throws XdrDecodeError on a body that does not match its procedure.
 */
export function decodeDomainEvent(procedure: number, body: Buffer): LibvirtEvent | undefined {
  const reader = new XdrReader(body);
  switch (procedure) {
    case EventProcedure.lifecycle: {
      reader.int();
      const domain = domainName(reader);
      const event = named(LIFECYCLE_EVENTS, reader.int());
      const detail = named(LIFECYCLE_DETAILS[event] ?? [], reader.int());
      return { kind: 'lifecycle', domain, event, detail };
    }
    case EventProcedure.ioErrorReason: {
      reader.int();
      const domain = domainName(reader);
      const path = reader.string();
      const alias = reader.string();
      const action = named(IO_ERROR_ACTIONS, reader.int());
      return { kind: 'io-error-reason', domain, path, alias, action, reason: reader.string() };
    }
    case EventProcedure.blockThreshold: {
      reader.int();
      const domain = domainName(reader);
      const device = reader.string();
      const path = reader.optionalString() ?? '';
      const thresholdBytes = reader.unsignedHyper();
      const excessBytes = reader.unsignedHyper();
      // "vda[1]": the target and the index of the layer in its chain.
      // [\s\S]: a device name is whatever libvirt sends, line breaks included (found by the fuzzer).
      const match = /^([\s\S]*?)(?:\[(\d+)\])?$/.exec(device)!;
      return { kind: 'block-threshold', domain, target: match[1]!, index: match[2] === undefined ? 0 : Number(match[2]), path, thresholdBytes, excessBytes };
    }
    case EventProcedure.deviceAdded: {
      reader.int();
      return { kind: 'other', domain: domainName(reader), name: 'device-added', detail: reader.string() };
    }
    case EventProcedure.deviceRemoved: {
      reader.int();
      return { kind: 'other', domain: domainName(reader), name: 'device-removed', detail: reader.string() };
    }
    case EventProcedure.blockJob2: {
      reader.int();
      const domain = domainName(reader);
      const disk = reader.string();
      const type = named(BLOCK_JOB_TYPES, reader.int());
      return { kind: 'other', domain, name: 'block-job-2', detail: `${type} for ${disk} ${named(BLOCK_JOB_STATUSES, reader.int())}` };
    }
    case EventProcedure.migrationIteration: {
      reader.int();
      const domain = domainName(reader);
      return { kind: 'other', domain, name: 'migration-iteration', detail: `iteration: '${reader.int()}'` };
    }
    case EventProcedure.jobCompleted: {
      reader.int();
      const domain = domainName(reader);
      // The statistics themselves are not needed: the event says when to look again.
      const count = reader.arrayLength(JOB_COMPLETED_PARAMETERS_MAX, 'job statistics');
      return { kind: 'other', domain, name: 'job-completed', detail: `${count} statistics` };
    }
    case EventProcedure.metadataChange: {
      reader.int();
      const domain = domainName(reader);
      const type = reader.int();
      return { kind: 'other', domain, name: 'metadata-change', detail: `type ${type} ${reader.optionalString() ?? ''}`.trim() };
    }
    case EventProcedure.diskChange: {
      reader.int();
      const domain = domainName(reader);
      const oldPath = reader.optionalString() ?? '';
      const newPath = reader.optionalString() ?? '';
      return { kind: 'other', domain, name: 'disk-change', detail: `${reader.string()}: ${oldPath} -> ${newPath}` };
    }
    case EventProcedure.trayChange: {
      reader.int();
      const domain = domainName(reader);
      return { kind: 'other', domain, name: 'tray-change', detail: reader.string() };
    }
    default:
      return undefined;
  }
}
