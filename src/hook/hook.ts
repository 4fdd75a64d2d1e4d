import type { StoragePlugin } from '../../plugins/types.js';
import { errorMessage } from '../errors.js';
import { readQcow2Header } from '../qcow2/header.js';

/**
 * The libvirt hook's decisions (libvirtd blocks while it runs). `prepare`
 * (a start here, or the destination side of a live migration) activates every
 * thin volume of the domain and makes this host see its current size before
 * QEMU opens it; another host may have extended it. A missing volume
 * refuses the start (exit 1, libvirt shows our message). Other operations
 * never reach node: the shell hook hands them to the agent's spool.
 */
export interface HookOutcome {
  exitCode: number;
  message?: string;
}

/**
 * `prepare begin` of one domain: every disk on a volume of the storage domain
 * (for a VG, only paths under it are looked at) is activated and refreshed,
 * with its whole chain. Run by the hook itself, or by the agent when the hook
 * reaches it (src/hook/agent-prepare.ts), which has everything loaded.
 */
export async function prepareDomain(domain: string, domainXml: string, vg: string | undefined, openPlugin: () => Promise<StoragePlugin>): Promise<HookOutcome> {
  let sources: string[];
  try {
    const { parseDomainXml } = await import('../libvirt/domain-xml.js');
    sources = parseDomainXml(domainXml).disks.flatMap((disk) => (disk.device === 'disk' && disk.source ? [disk.source] : []));
  } catch (error) {
    // Not ours to block a start over: libvirt itself decides whether this XML can run.
    return { exitCode: 0, message: `tideline hook: cannot read the XML of domain ${domain} (${errorMessage(error)}); thin volumes were not refreshed` };
  }
  const candidates = vg ? sources.filter((source) => source.startsWith(`/dev/${vg}/`) || source.startsWith('/dev/mapper/')) : sources;
  if (candidates.length === 0) return { exitCode: 0 };
  const plugin = await openPlugin();
  for (const source of candidates) {
    const volume = await plugin.volumeForPath(source);
    if (!volume) continue;
    try {
      await prepareChain(plugin, volume);
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code === 'volume-not-found') return { exitCode: 1, message: `tideline: domain ${domain} cannot start: its disk ${source} is volume ${volume}, which does not exist in storage domain ${plugin.domain}` };
      return { exitCode: 1, message: `tideline: domain ${domain} cannot start: activating and refreshing volume ${volume} (${source}) failed: ${errorMessage(error)}` };
    }
  }
  return { exitCode: 0 };
}

/** Longer chains than this are refused by QEMU too. */
const MAX_CHAIN_DEPTH = 64;

/**
 * Activates and refreshes the volume and every volume under it (a snapshot's
 * older layers, a template): a domain arriving by migration, or started on a
 * host that never ran it, finds them inactive here, and QEMU opens them all.
 * The chain is read from the images' own qcow2 headers.
 */
async function prepareChain(plugin: StoragePlugin, top: string): Promise<void> {
  let volume: string | undefined = top;
  for (let depth = 0; volume !== undefined && depth < MAX_CHAIN_DEPTH; depth += 1) {
    if (!(await plugin.isActive(volume))) await plugin.activate(volume);
    await plugin.refresh(volume);
    const backingFile: string | undefined = (await readQcow2Header(plugin.backingPath(volume)).catch(() => undefined))?.backingFile;
    volume = backingFile ? await plugin.volumeForPath(backingFile) : undefined;
  }
}
