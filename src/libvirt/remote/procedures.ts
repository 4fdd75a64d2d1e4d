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
  domainGetXmlDesc: 14,
  domainLookupByName: 23,
  domainResume: 28,
  authList: 66,
  authPolkit: 70,
  connectGetLibVersion: 157,
  domainGetState: 212,
  domainGetDiskErrors: 263,
  domainGetMetadata: 265,
  domainGetJobStats: 298,
  connectGetAllDomainStats: 344,
  domainSetBlockThreshold: 386,
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
const DISK_ERRORS_MAX = 256;
const DOMAIN_LIST_MAX = 16_384;
const ALL_DOMAIN_STATS_MAX = 4096;
/** VIR_DOMAIN_STATS_BLOCK: what `virsh domstats --block` asks for. */
const STATS_BLOCK = 32;

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

/** `virDomainGetXMLDesc(dom, 0)`: the live definition of a running domain, as `virsh dumpxml` prints it. */
export const encodeGetXmlDesc = encodeDomainAndFlags;

export function decodeGetXmlDesc(body: Buffer): string {
  return new XdrReader(body).string();
}

/** The calls that take a domain and flags 0 and nothing else (get state, get job stats). */
export function encodeDomainAndFlags(domain: RemoteDomain): Buffer {
  return writeDomain(new XdrWriter(), domain).uint(0).bytes();
}

export const encodeGetJobStats = encodeDomainAndFlags;
export const encodeGetState = encodeDomainAndFlags;

export function encodeDomainOnly(domain: RemoteDomain): Buffer {
  return writeDomain(new XdrWriter(), domain).bytes();
}

export function decodeGetState(body: Buffer): { state: number; reason: number } {
  const reader = new XdrReader(body);
  return { state: reader.int(), reason: reader.int() };
}

export function encodeSetBlockThreshold(domain: RemoteDomain, device: string, bytes: number): Buffer {
  const writer = writeDomain(new XdrWriter(), domain).string(device);
  // An unsigned hyper as two words: thresholds are below 2^53.
  return writer.uint(Math.floor(bytes / 2 ** 32)).uint(bytes % 2 ** 32).uint(0).bytes();
}

export function encodeGetDiskErrors(domain: RemoteDomain): Buffer {
  return writeDomain(new XdrWriter(), domain).uint(DISK_ERRORS_MAX).uint(0).bytes();
}

/** virDomainDiskErrorCode, in virsh's words. */
const DISK_ERROR_TEXT = ['no error', 'unspecified error', 'no space'];

export function decodeGetDiskErrors(body: Buffer): Map<string, string> {
  const reader = new XdrReader(body);
  const count = reader.arrayLength(DISK_ERRORS_MAX, 'disk errors');
  const errors = new Map<string, string>();
  for (let index = 0; index < count; index += 1) {
    const disk = reader.string();
    const code = reader.int();
    errors.set(disk, DISK_ERROR_TEXT[code] ?? `error ${code}`);
  }
  return errors;
}

/** `virDomainListGetStats([domain], BLOCK, 0)`, which is what `virsh domstats --block DOMAIN` calls. */
export function encodeGetBlockStats(domain: RemoteDomain): Buffer {
  return writeDomain(new XdrWriter().uint(1), domain).uint(STATS_BLOCK).uint(0).bytes();
}

/** The one domain's statistics, by field name ("block.0.allocation"). */
export function decodeGetAllDomainStats(body: Buffer): Map<string, TypedValue> {
  const reader = new XdrReader(body);
  const records = reader.arrayLength(DOMAIN_LIST_MAX, 'domain statistics records');
  const fields = new Map<string, TypedValue>();
  for (let record = 0; record < records; record += 1) {
    readDomain(reader);
    const count = reader.arrayLength(ALL_DOMAIN_STATS_MAX, 'domain statistics');
    for (let index = 0; index < count; index += 1) {
      const field = reader.string();
      fields.set(field, readTypedValue(reader, field));
    }
  }
  return fields;
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

/** libvirt's version number (major * 1,000,000 + minor * 1,000 + micro) as "9.0.0". */
export function decodeLibVersion(body: Buffer): string {
  const version = new XdrReader(body).unsignedHyper();
  return `${Math.floor(version / 1_000_000)}.${Math.floor(version / 1000) % 1000}.${version % 1000}`;
}
