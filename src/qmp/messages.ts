/** QMP wire messages as tideline sees them (QEMU's qapi/control.json). */

export interface QmpVersion {
  qemu: { major: number; minor: number; micro: number };
  package: string;
}

export interface QmpGreeting {
  kind: 'greeting';
  version: QmpVersion;
  capabilities: string[];
}

export interface QmpReturn {
  kind: 'return';
  id: string | undefined;
  value: unknown;
}

export interface QmpErrorReply {
  kind: 'error';
  id: string | undefined;
  errorClass: string;
  description: string;
}

export interface QmpEvent {
  kind: 'event';
  event: string;
  data: Record<string, unknown>;
  /** Microseconds since the epoch, from QEMU's own clock. */
  timestampMicros: number;
}

export type QmpMessage = QmpGreeting | QmpReturn | QmpErrorReply | QmpEvent;
