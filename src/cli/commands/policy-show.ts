import { parseArgs } from 'node:util';
import { readPlainPolicy, TIDELINE_NAMESPACE, type DiskPolicy, type DomainPolicy } from '../../libvirt/policy-reader.js';
import { DirectLibvirt } from '../../libvirt/remote/direct-libvirt.js';
import { DEFAULT_URI, Virsh } from '../../libvirt/virsh.js';
import type { Runner } from '../../util/command-contract.js';
import { formatSize } from '../../util/sizes.js';

/**
 * `tideline policy show`, kept apart from the yargs command so that the usual
 * form of it loads neither yargs, execa, zod nor the XML parser: admins and
 * scripts run it often, and those libraries would take several times longer
 * to load than node takes to start.
 */
export interface PolicyShowArguments {
  vm: string;
  json: boolean;
  uri: string;
}

/** The domain's policy as libvirt holds it; the full XML parser only for a form the plain reader declines. */
export async function readDomainPolicy(virsh: Virsh, vm: string): Promise<DomainPolicy> {
  const xml = await virsh.metadata(vm, TIDELINE_NAMESPACE);
  return readPlainPolicy(xml) ?? (await import('../../libvirt/domain-xml.js')).parsePolicyXml(xml);
}

export async function showPolicy(argv: PolicyShowArguments, run: Runner): Promise<void> {
  const policy = await readDomainPolicy(new Virsh(run, argv.uri, new DirectLibvirt(argv.uri)), argv.vm);
  if (argv.json) {
    process.stdout.write(`${JSON.stringify(policy, null, 2)}\n`);
    return;
  }
  process.stdout.write(`${argv.vm}: ${describePolicy(policy.vm)}\n`);
  for (const [target, disk] of Object.entries(policy.disks)) process.stdout.write(`  ${target}: ${describePolicy(disk)}\n`);
}

/**
 * Runs `policy show` when the arguments are its plain form (one domain,
 * --json, --uri); false when they need the full parser (help, a mistake).
 */
export async function runPolicyShowQuickly(args: readonly string[]): Promise<boolean> {
  let parsed;
  try {
    parsed = parseArgs({ args: [...args], options: { json: { type: 'boolean' }, uri: { type: 'string' } }, strict: true, allowPositionals: true });
  } catch {
    return false;
  }
  const [vm, ...rest] = parsed.positionals;
  if (vm === undefined || rest.length > 0) return false;
  await showPolicy({ vm, json: parsed.values.json ?? false, uri: parsed.values.uri ?? DEFAULT_URI }, runVirshOnlyIfNeeded);
  return true;
}

/**
 * The light runner, loaded only when the socket cannot be used and virsh must
 * answer: node's child_process (with the dgram and stream modules it brings)
 * is a measurable part of this command's start-up, and is rarely needed.
 */
const runVirshOnlyIfNeeded: Runner = async (command, args, options) => (await import('../../util/light-runner.js')).lightRunner(command, args, options);

export function describePolicy(policy: DiskPolicy): string {
  const parts = [
    policy.enabled === undefined ? '' : `enabled=${policy.enabled ? 'yes' : 'no'}`,
    policy.chunk === undefined ? '' : `chunk=${formatSize(policy.chunk)}`,
    policy.freeTarget === undefined ? '' : `free-target=${formatSize(policy.freeTarget)}`,
    policy.maxSize === undefined ? '' : `max-size=${formatSize(policy.maxSize)}`,
  ].filter(Boolean);
  return parts.length ? parts.join(' ') : '(host defaults)';
}
