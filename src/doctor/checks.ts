import { access, constants, readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { StoragePlugin } from '../../plugins/types.js';
import type { HostConfig } from '../config/host-config.js';
import { formatAddress, isWildcardAddress } from '../util/address-text.js';
import { errorMessage } from '../errors.js';
import { parseDomainXml } from '../libvirt/domain-xml.js';
import { directPathUnusable, type DirectLibvirt } from '../libvirt/remote/direct-libvirt.js';
import type { Virsh } from '../libvirt/virsh.js';
import { Mailbox } from '../mailbox/mailbox.js';
import type { Runner } from '../util/runner.js';

/** One finding of `tideline doctor`. */
export interface Finding {
  check: string;
  status: 'ok' | 'warn' | 'fail';
  detail: string;
}

export const HOOK_FILE = '/etc/libvirt/hooks/qemu.d/tideline';
const LIBVIRTD_PID_FILE = '/run/libvirtd.pid';

/**
 * libvirtd looks for qemu hooks (/etc/libvirt/hooks/qemu, qemu.d/*) only when
 * it starts: a hook directory that was empty then is never looked at again.
 */
export async function checkHook(file = HOOK_FILE, libvirtdPidFile = LIBVIRTD_PID_FILE): Promise<Finding> {
  try {
    await access(file, constants.X_OK);
  } catch {
    return { check: 'libvirt hook', status: 'warn', detail: `${file} is missing or not executable: volumes are not refreshed before a VM starts; run 'tideline hook install'` };
  }
  const libvirtd = await libvirtdStart(libvirtdPidFile);
  if (libvirtd && !(await hooksExistedAt(path.dirname(file), libvirtd.startedMs))) {
    return {
      check: 'libvirt hook',
      status: 'warn',
      detail: `${file} is installed, but libvirtd (pid ${libvirtd.pid}) started before it; if no qemu hook existed then, libvirtd runs none until it restarts: run 'systemctl restart libvirtd' (running VMs keep running)`,
    };
  }
  return { check: 'libvirt hook', status: 'ok', detail: file };
}

async function libvirtdStart(pidFile: string): Promise<{ pid: number; startedMs: number } | undefined> {
  try {
    const pid = Number((await readFile(pidFile, 'utf8')).trim());
    const [stat, procStat] = await Promise.all([readFile(`/proc/${pid}/stat`, 'utf8'), readFile('/proc/stat', 'utf8')]);
    // Field 22 of /proc/PID/stat: start time in clock ticks (100 per second on Linux) after boot; after the command name, which may hold spaces.
    const startTicks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
    const bootSeconds = Number(/^btime (\d+)$/m.exec(procStat)?.[1]);
    if (!Number.isFinite(startTicks) || !Number.isFinite(bootSeconds)) return undefined;
    return { pid, startedMs: bootSeconds * 1000 + startTicks * 10 };
  } catch {
    return undefined; // libvirtd not running, or not ours to inspect: the libvirtd check speaks for it
  }
}

async function hooksExistedAt(hookDirectory: string, momentMs: number): Promise<boolean> {
  const candidates = [path.join(path.dirname(hookDirectory), 'qemu'), ...(await readdir(hookDirectory).catch(() => [] as string[])).map((name) => path.join(hookDirectory, name))];
  for (const candidate of candidates) {
    const info = await stat(candidate).catch(() => undefined);
    // A second of slack: the clock-tick start time and file times are not exact to the millisecond.
    if (info && info.mtimeMs <= momentMs + 1_000) return true;
  }
  return false;
}

export async function checkStorage(open: () => Promise<StoragePlugin>): Promise<{ finding: Finding; plugin?: StoragePlugin }> {
  try {
    const plugin = await open();
    return { finding: { check: 'storage domain', status: 'ok', detail: `${plugin.kind} ${plugin.domain}: ${Math.round((await plugin.freeBytes()) / 2 ** 20)} MiB free` }, plugin };
  } catch (error) {
    return { finding: { check: 'storage domain', status: 'fail', detail: errorMessage(error) } };
  }
}

export async function checkMailbox(config: HostConfig): Promise<Finding> {
  if (!config.mailbox) return { check: 'mailbox', status: 'warn', detail: 'no mailbox in the configuration: this host extends volumes itself (single host only)' };
  try {
    const mailbox = await Mailbox.open(config.mailbox);
    try {
      const hostId = config['host-id'];
      if (hostId === undefined) return { check: 'mailbox', status: 'fail', detail: `${config.mailbox} is readable but host-id is not set` };
      mailbox.assertHostId(hostId);
      return { check: 'mailbox', status: 'ok', detail: `${config.mailbox}: mailbox ${mailbox.header.mailboxId}, host ${hostId} of ${mailbox.maxHosts}` };
    } finally {
      await mailbox.close();
    }
  } catch (error) {
    return { check: 'mailbox', status: 'fail', detail: errorMessage(error) };
  }
}

/**
 * The doorbell settings make sense: this host's SPM listens on an address it
 * can name to the hosts (they learn it from the reply slots it writes), and
 * rings go only where there is a mailbox. The settings are optional; without
 * a doorbell the SPM looks at the mailbox every 30 ms.
 */
export function checkDoorbell(config: HostConfig): Finding {
  const own = config.doorbell;
  const rung = config['spm-doorbells'] ?? [];
  if (!own && rung.length === 0) {
    return { check: 'doorbell', status: 'ok', detail: "none set up: a quiet SPM looks at the mailbox every 30 ms; set doorbell on each SPM candidate (an address of that host the others reach) for answers without that CPU: hosts learn it from their reply slots (docs/mailbox-format.md, 'Doorbell')" };
  }
  if (!config.mailbox) return { check: 'doorbell', status: 'warn', detail: 'doorbell settings without a mailbox: this host extends volumes itself and neither rings nor serves' };
  if (own && isWildcardAddress(own.host)) {
    return { check: 'doorbell', status: 'warn', detail: `this host's SPM would listen on the wildcard address ${formatAddress(own)}, which it cannot name to the hosts: only hosts whose spm-doorbells lists this host would ring it; set doorbell to an address of this host the others reach` };
  }
  const listens = own ? `this host's SPM listens on ${formatAddress(own)} while it serves and names it in the reply slots it writes; ` : '';
  const listed = rung.length > 0 ? `rings ${rung.map(formatAddress).join(', ')} and ` : 'rings ';
  return { check: 'doorbell', status: 'ok', detail: `${listens}${listed}the doorbell the SPM names in this host's reply slot` };
}

/** libvirtd, and every running domain's thin disks: without error_policy='stop' a full volume is an I/O error in the guest. */
export async function checkLibvirt(virsh: Virsh, plugin: StoragePlugin | undefined): Promise<Finding[]> {
  let domains: string[];
  try {
    domains = await virsh.activeDomains();
  } catch (error) {
    return [{ check: 'libvirtd', status: 'fail', detail: `not reachable at ${virsh.uri}: ${errorMessage(error)}` }];
  }
  const findings: Finding[] = [{ check: 'libvirtd', status: 'ok', detail: `${virsh.uri}: ${domains.length} active domains` }];
  if (!plugin) return findings;
  for (const domain of domains) {
    try {
      const info = parseDomainXml(await virsh.dumpXml(domain));
      for (const disk of info.disks) {
        if (disk.device !== 'disk' || !disk.source || !(await plugin.volumeForPath(disk.source))) continue;
        if (disk.errorPolicy !== 'stop') {
          findings.push({ check: `${domain} ${disk.target}`, status: 'fail', detail: `thin disk without error_policy='stop' (has '${disk.errorPolicy ?? 'report'}'): when its volume fills, the GUEST gets I/O errors instead of a pause. Set <driver ... error_policy='stop'/>` });
        } else if (disk.format !== 'qcow2') {
          findings.push({ check: `${domain} ${disk.target}`, status: 'warn', detail: `disk on a tideline volume is ${disk.format ?? 'raw'}, not qcow2: it is not thin-provisioned` });
        }
      }
    } catch (error) {
      findings.push({ check: domain, status: 'warn', detail: `could not read its XML: ${errorMessage(error)}` });
    }
  }
  return findings;
}

/**
 * Whether the agent can ask libvirtd over its socket at every poll, or will
 * start virsh for every question (about 11 ms of CPU each, two per domain per
 * poll): still correct, but it costs an idle host more.
 */
export async function checkLibvirtSocket(direct: DirectLibvirt): Promise<Finding> {
  try {
    const { socket, libvirtVersion } = await direct.probe();
    return { check: 'libvirt socket', status: 'ok', detail: `${direct.uri} answers over ${socket} (libvirt ${libvirtVersion}); the agent asks it directly at every poll` };
  } catch (error) {
    if (!directPathUnusable(error)) return { check: 'libvirt socket', status: 'warn', detail: `${direct.uri}: ${errorMessage(error)}` };
    return { check: 'libvirt socket', status: 'warn', detail: `${direct.uri} cannot be asked over a local socket (${errorMessage(error)}); the agent will start virsh for every question, two per domain per safety poll` };
  }
}

export async function checkVersions(run: Runner): Promise<Finding> {
  const probes: Array<[string, string[], RegExp]> = [
    ['qemu', ['qemu-system-x86_64', '--version'], /version (\S+)/],
    ['libvirt', ['virsh', '--version'], /(\S+)/],
    ['lvm', ['lvm', 'version'], /LVM version:\s+(\S+)/],
    ['sanlock', ['sanlock', 'version'], /(\S+)/],
  ];
  const parts = [`node ${process.versions.node}`];
  for (const [name, [command, ...args], pattern] of probes) {
    const result = await run(command!, args, { timeoutMs: 10_000, acceptExitCodes: [1] }).catch(() => undefined);
    parts.push(`${name} ${result ? (pattern.exec(`${result.stdout}\n${result.stderr}`)?.[1] ?? '?') : 'missing'}`);
  }
  const missing = parts.filter((part) => part.endsWith('missing'));
  return { check: 'versions', status: missing.length ? 'warn' : 'ok', detail: parts.join(', ') };
}
