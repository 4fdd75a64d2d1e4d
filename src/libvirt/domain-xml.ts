import { XMLParser } from 'fast-xml-parser';
import { z } from 'zod';
import { TideError } from '../errors.js';
import { sizeField } from '../config/sizes-schema.js';
import type { DiskPolicy, DomainPolicy } from './policy-reader.js';

export { TIDELINE_NAMESPACE, type DiskPolicy, type DomainPolicy } from './policy-reader.js';

/** What tideline reads from a domain's XML (pure): its disks and its tideline policy. */

export class DomainXmlError extends TideError {
  readonly code = 'domain-xml';
}

export interface DomainDisk {
  target: string;
  /** Block device (type='block') or file path. */
  source: string | undefined;
  /** libvirt's index of the active layer, for thresholds ("vda[1]"). */
  index: number | undefined;
  format: string | undefined;
  errorPolicy: string | undefined;
  device: string;
  /** The layers under the active one, top down, as libvirt names them in a live XML (`vda[2]`). */
  backingChain: Array<{ source: string | undefined; index: number | undefined }>;
  /** The target of a block job that writes a copy of the disk (`virsh blockcopy`: job 'copy'), while it runs. */
  mirror?: { job: string; source: string | undefined; ready: boolean };
}

export interface DomainInfo {
  name: string;
  disks: DomainDisk[];
  /** Policy for the whole VM, and per disk target. */
  policy: DomainPolicy;
}

const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@', removeNSPrefix: true, isArray: (name) => ['disk', 'drive'].includes(name) });

const policySchema = z
  .object({
    '@enabled': z.enum(['yes', 'no']).optional(),
    '@chunk': sizeField('chunk').optional(),
    '@free-target': sizeField('free-target').optional(),
    '@max-size': sizeField('max-size').optional(),
  })
  .passthrough();

export function parseDomainXml(xml: string): DomainInfo {
  let document: Record<string, unknown>;
  try {
    document = parser.parse(xml, true) as Record<string, unknown>;
  } catch (error) {
    throw new DomainXmlError(`domain XML is not well-formed: ${(error as Error).message}`, { cause: error });
  }
  const domain = document.domain as Record<string, unknown> | undefined;
  if (!domain || typeof domain.name !== 'string') throw new DomainXmlError('domain XML has no <domain><name>');
  const devices = (domain.devices ?? {}) as { disk?: Array<Record<string, Record<string, string> | string>> };
  const disks: DomainDisk[] = (devices.disk ?? []).map((disk) => {
    const source = (disk.source ?? {}) as Record<string, string>;
    const driver = (disk.driver ?? {}) as Record<string, string>;
    const target = (disk.target ?? {}) as Record<string, string>;
    return {
      target: target['@dev'] ?? '',
      source: source['@dev'] ?? source['@file'],
      index: source['@index'] === undefined ? undefined : Number(source['@index']),
      format: driver['@type'],
      errorPolicy: driver['@error_policy'],
      device: String(disk['@device'] ?? 'disk'),
      backingChain: backingChainOf(disk.backingStore),
      ...mirrorOf(disk.mirror),
    };
  });
  return { name: domain.name, disks, policy: readPolicy(domain.metadata) };
}

function backingChainOf(element: unknown): DomainDisk['backingChain'] {
  const chain: DomainDisk['backingChain'] = [];
  let current = element as Record<string, unknown> | undefined;
  // An empty <backingStore/> ends the chain; 64 layers is more than QEMU opens.
  while (current && typeof current === 'object' && chain.length < 64) {
    const source = (current.source ?? {}) as Record<string, string>;
    const path = source['@dev'] ?? source['@file'];
    if (path === undefined) break;
    chain.push({ source: path, index: current['@index'] === undefined ? undefined : Number(current['@index']) });
    current = current.backingStore as Record<string, unknown> | undefined;
  }
  return chain;
}

/** A disk's `<mirror>`: `<mirror type='block' job='copy' ready='yes'><source dev='...'/></mirror>` (older libvirt: a `file` attribute). */
function mirrorOf(element: unknown): Pick<DomainDisk, 'mirror'> {
  if (!element || typeof element !== 'object') return {};
  const mirror = element as Record<string, unknown>;
  const source = (mirror.source ?? {}) as Record<string, string>;
  const path = source['@dev'] ?? source['@file'] ?? (typeof mirror['@file'] === 'string' ? mirror['@file'] : undefined);
  return { mirror: { job: String(mirror['@job'] ?? 'copy'), source: path, ready: mirror['@ready'] === 'yes' } };
}

/** The tideline element alone, as `virsh metadata DOMAIN NAMESPACE` prints it. */
export function parsePolicyXml(xml: string): DomainInfo['policy'] {
  if (!xml.trim()) return { vm: {}, disks: {} };
  let document: unknown;
  try {
    document = parser.parse(xml, true);
  } catch (error) {
    throw new DomainXmlError(`tideline metadata is not well-formed XML: ${(error as Error).message}`, { cause: error });
  }
  return readPolicy(document);
}

/** The tideline element for a policy (pure); sizes in bytes. */
export function policyXml(policy: DomainInfo['policy']): string {
  const attributes = (value: DiskPolicy) =>
    [
      value.enabled === undefined ? '' : ` enabled='${value.enabled ? 'yes' : 'no'}'`,
      value.chunk === undefined ? '' : ` chunk='${value.chunk}'`,
      value.freeTarget === undefined ? '' : ` free-target='${value.freeTarget}'`,
      value.maxSize === undefined ? '' : ` max-size='${value.maxSize}'`,
    ].join('');
  const drives = Object.entries(policy.disks).map(([target, value]) => `<drive target='${target.replace(/[^A-Za-z0-9_]/g, '')}'${attributes(value)}/>`);
  return `<thin${attributes(policy.vm)}>${drives.join('')}</thin>`;
}

function readPolicy(metadata: unknown): DomainInfo['policy'] {
  const policy: DomainInfo['policy'] = { vm: {}, disks: {} };
  const thin = (metadata as Record<string, unknown> | undefined)?.thin as Record<string, unknown> | undefined;
  if (!thin || typeof thin !== 'object') return policy;
  policy.vm = toPolicy(thin, 'the VM');
  const drives = (thin.drive ?? []) as Array<Record<string, unknown>>;
  for (const drive of drives) {
    const target = drive['@target'];
    if (typeof target !== 'string') throw new DomainXmlError('tideline policy: every <drive> needs a target attribute (vda, vdb, ...)');
    policy.disks[target] = toPolicy(drive, `disk ${target}`);
  }
  return policy;
}

function toPolicy(element: Record<string, unknown>, what: string): DiskPolicy {
  const parsed = policySchema.safeParse(element);
  if (!parsed.success) throw new DomainXmlError(`tideline policy for ${what}: ${parsed.error.issues.map(describeIssue).join('; ')}`);
  const value = parsed.data;
  return {
    ...(value['@enabled'] ? { enabled: value['@enabled'] === 'yes' } : {}),
    ...(value['@chunk'] !== undefined ? { chunk: value['@chunk'] } : {}),
    ...(value['@free-target'] !== undefined ? { freeTarget: value['@free-target'] } : {}),
    ...(value['@max-size'] !== undefined ? { maxSize: value['@max-size'] } : {}),
  };
}

/** One problem with a policy attribute, named once (a size's own message already names it). */
function describeIssue(issue: z.ZodIssue): string {
  const attribute = String(issue.path[0] ?? '').replace('@', '');
  return issue.message.startsWith(`${attribute}:`) ? issue.message : `${attribute}: ${issue.message}`;
}

/** The policy that applies to one disk: the disk's own settings over the VM's. */
export function policyFor(info: DomainInfo, target: string): DiskPolicy {
  return { ...info.policy.vm, ...info.policy.disks[target] };
}
