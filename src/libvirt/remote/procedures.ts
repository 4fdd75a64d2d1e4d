import { XdrDecodeError, XdrReader, XdrWriter } from './xdr.js';

/**
 * The few calls of libvirt's remote protocol (src/remote/remote_protocol.x)
 * tideline makes without virsh: their procedure numbers, arguments and
 * replies. Procedure numbers are never reused or renumbered, since a client of
 * any release must be able to talk to a daemon of any other.
 */
export const Procedure = {
  connectOpen: 1,
  connectClose: 2,
  domainLookupByName: 23,
  authList: 66,
  authPolkit: 70,
  domainGetMetadata: 265,
  domainGetJobStats: 298,
} as const;

export const AuthType = { none: 0, sasl: 1, polkit: 2 } as const;

/** VIR_DOMAIN_METADATA_ELEMENT: an element in an application's own namespace. */
const METADATA_ELEMENT = 2;
/** VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT, the `operation` field of job stats. */
export const JOB_OPERATION_MIGRATION_OUT = 5;
/** VIR_DOMAIN_JOB_NONE */
export const JOB_TYPE_NONE = 0;

const UUID_BYTES = 16;
const AUTH_TYPE_LIST_MAX = 20;
const JOB_STATS_MAX = 64;

/** `remote_nonnull_domain`: what a lookup returns and every domain call takes. */
export interface RemoteDomain {
  name: string;
  uuid: Buffer;
  id: number;
}

export function encodeConnectOpen(name: string): Buffer {
  return new XdrWriter().optionalString(name).uint(0).bytes();
}

export function decodeAuthList(body: Buffer): number[] {
  const reader = new XdrReader(body);
  const count = reader.arrayLength(AUTH_TYPE_LIST_MAX, 'authentication types');
  return Array.from({ length: count }, () => reader.int());
}

export function encodeLookupByName(name: string): Buffer {
  return new XdrWriter().string(name).bytes();
}

export function decodeDomain(body: Buffer): RemoteDomain {
  const reader = new XdrReader(body);
  return readDomain(reader);
}

function readDomain(reader: XdrReader): RemoteDomain {
  return { name: reader.string(), uuid: reader.fixedOpaque(UUID_BYTES), id: reader.int() };
}

function writeDomain(writer: XdrWriter, domain: RemoteDomain): XdrWriter {
  return writer.string(domain.name).fixedOpaque(domain.uuid).int(domain.id);
}

/** `virDomainGetMetadata(dom, ELEMENT, namespace, AFFECT_CURRENT)`: the live definition of a running domain, else the stored one (as `virsh metadata` does). */
export function encodeGetMetadata(domain: RemoteDomain, namespace: string): Buffer {
  return writeDomain(new XdrWriter(), domain).int(METADATA_ELEMENT).optionalString(namespace).uint(0).bytes();
}

export function decodeGetMetadata(body: Buffer): string {
  return new XdrReader(body).string();
}

export function encodeGetJobStats(domain: RemoteDomain): Buffer {
  return writeDomain(new XdrWriter(), domain).uint(0).bytes();
}

export type TypedValue = number | boolean | string;

export interface JobStats {
  type: number;
  fields: Map<string, TypedValue>;
}

/** `remote_typed_param` values, by virTypedParameterType. */
const TypedParameter = { int: 1, uint: 2, longLong: 3, unsignedLongLong: 4, double: 5, boolean: 6, string: 7 } as const;

export function decodeGetJobStats(body: Buffer): JobStats {
  const reader = new XdrReader(body);
  const type = reader.int();
  const count = reader.arrayLength(JOB_STATS_MAX, 'job statistics');
  const fields = new Map<string, TypedValue>();
  for (let index = 0; index < count; index += 1) {
    const field = reader.string();
    fields.set(field, readTypedValue(reader, field));
  }
  return { type, fields };
}

function readTypedValue(reader: XdrReader, field: string): TypedValue {
  const kind = reader.int();
  switch (kind) {
    case TypedParameter.int:
      return reader.int();
    case TypedParameter.uint:
      return reader.uint();
    case TypedParameter.longLong:
      return reader.hyper();
    case TypedParameter.unsignedLongLong:
      return reader.unsignedHyper();
    case TypedParameter.double:
      return reader.double();
    case TypedParameter.boolean:
      return reader.int() !== 0;
    case TypedParameter.string:
      return reader.string();
    default:
      throw new XdrDecodeError(`libvirt job statistic '${field}' has type ${kind}, which no libvirt release defines`);
  }
}

/** A job runs and it is the source side of a migration (what `virsh domjobinfo` prints as "Outgoing migration"). */
export function isOutgoingMigration(stats: JobStats): boolean {
  return stats.type !== JOB_TYPE_NONE && stats.fields.get('operation') === JOB_OPERATION_MIGRATION_OUT;
}
