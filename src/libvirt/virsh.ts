import type { Runner } from '../util/runner.js';
import { blockStatsFromFields, type BlockStats, type DomainState } from './domain-facts.js';
import { LibvirtError } from './libvirt-error.js';
import { errorMessage } from '../errors.js';
import { directPathUnusable, type DirectLibvirt } from './remote/direct-libvirt.js';

export { LibvirtError };
export type { BlockStats, DomainState };

export const DEFAULT_URI = 'qemu:///system';
const VIRSH_TIMEOUT_MS = 20_000;

/**
 * libvirt through `virsh`: the npm bindings either do not build on Node 20
 * (node-libvirt) or have no event API (@unraid/libvirt). virsh ships with
 * libvirt, speaks its stable public API, and its output for these commands is
 * stable across versions. Everything libvirt-specific goes through this one
 * adapter. With `direct`, the calls made at every poll and on paths someone
 * waits on (state, block statistics and errors, thresholds, resume, the
 * tideline metadata, whether a job is an outgoing migration) go straight to
 * the local daemon's socket (remote/), and fall back to virsh whenever that
 * socket cannot be used. Events, lists, XML and migration control stay with
 * virsh.
 */
export class Virsh {
  constructor(
    private readonly run: Runner,
    readonly uri = DEFAULT_URI,
    private readonly direct?: DirectLibvirt,
  ) {}

  /** Whether questions go to libvirtd's socket first (not with --no-libvirt-socket). */
  get usesSocket(): boolean {
    return this.direct !== undefined;
  }

  /** The direct answer, or virsh's when the socket cannot be used. */
  private async directFirst<T>(ask: (direct: DirectLibvirt) => Promise<T>, viaVirsh: () => Promise<T>): Promise<T> {
    if (this.direct) {
      try {
        return await ask(this.direct);
      } catch (error) {
        if (!directPathUnusable(error)) throw error;
        this.direct.noteUnusable(error as Error);
      }
    }
    return viaVirsh();
  }

  async virsh(args: readonly string[], acceptExitCodes: number[] = []): Promise<string> {
    try {
      return (await this.run('virsh', ['--quiet', '-c', this.uri, ...args], { timeoutMs: VIRSH_TIMEOUT_MS, acceptExitCodes })).stdout;
    } catch (error) {
      throw new LibvirtError(`virsh ${args[0]} failed: ${(error as Error).message}`, { cause: error });
    }
  }

  /** Running and paused domains. */
  async activeDomains(): Promise<string[]> {
    return (await this.virsh(['list', '--name'])).split('\n').map((line) => line.trim()).filter(Boolean);
  }

  dumpXml(domain: string): Promise<string> {
    return this.directFirst(
      (direct) => direct.xml(domain),
      () => this.virsh(['dumpxml', '--', domain]),
    );
  }

  async state(domain: string): Promise<DomainState> {
    return this.directFirst(
      (direct) => direct.state(domain),
      async () => parseDomState(await this.virsh(['domstate', '--reason', '--', domain])),
    );
  }

  /** Disk targets whose last I/O failed, with libvirt's error text ("no space"). */
  async blockErrors(domain: string): Promise<Map<string, string>> {
    return this.directFirst(
      (direct) => direct.blockErrors(domain),
      async () => parseBlockErrors(await this.virsh(['domblkerror', '--', domain])),
    );
  }

  async blockStats(domain: string): Promise<BlockStats[]> {
    return this.directFirst(
      (direct) => direct.blockStats(domain),
      async () => parseBlockStats(await this.virsh(['domstats', '--block', '--', domain])),
    );
  }

  async setThreshold(domain: string, device: string, bytes: number): Promise<void> {
    await this.directFirst<unknown>(
      (direct) => direct.setThreshold(domain, device, bytes),
      () => this.virsh(['domblkthreshold', '--', domain, device, String(bytes)]),
    );
  }

  /** The domain's tideline metadata element, or '' when it has none. */
  async metadata(domain: string, namespace: string): Promise<string> {
    return this.directFirst(
      (direct) => direct.metadata(domain, namespace),
      () =>
        this.virsh(['metadata', '--', domain, namespace], []).catch((error: unknown) => {
          if (/metadata not found|does not have metadata/i.test((error as Error).message)) return '';
          throw error;
        }),
    );
  }

  /**
   * A mark on the running domain alone (never its configuration): it lives
   * as long as this QEMU, and a save file carries it to the restored one.
   * `xml` undefined removes it.
   */
  async setLiveMetadata(domain: string, namespace: string, key: string, xml: string | undefined): Promise<void> {
    const change = xml === undefined ? ['--remove'] : ['--key', key, '--set', xml];
    await this.virsh(['metadata', '--domain', domain, '--uri', namespace, ...change, '--live']);
  }

  /** Sets it on the running domain and, for a persistent one, in its configuration too. */
  async setMetadata(domain: string, namespace: string, key: string, xml: string): Promise<void> {
    const persistent = /Persistent:\s+yes/.test(await this.virsh(['dominfo', '--', domain]));
    const running = /State:\s+(running|paused)/.test(await this.virsh(['dominfo', '--', domain]));
    const scope = [...(running ? ['--live'] : []), ...(persistent ? ['--config'] : [])];
    // Named options throughout: after '--' virsh takes everything as positional.
    await this.virsh(['metadata', '--domain', domain, '--uri', namespace, '--key', key, '--set', xml, ...scope]);
  }

  async resume(domain: string): Promise<void> {
    await this.directFirst<unknown>(
      (direct) => direct.resume(domain),
      () => this.virsh(['resume', '--', domain]),
    );
  }

  /** Whether the domain's job is an outgoing migration (`virsh domjobinfo`: "Operation: Outgoing migration"). */
  async migratingOut(domain: string): Promise<boolean> {
    return this.directFirst(
      (direct) => direct.migratingOut(domain),
      // virsh has only the words of libvirt's refusal on a migration's destination (DirectLibvirt.migratingOut).
      async () => isOutgoingMigrationJob(await this.virsh(['domjobinfo', '--', domain]).catch((error: unknown) => (/only on the source host/.test(errorMessage(error)) ? '' : Promise.reject(error)))),
    );
  }

  /** Grows a disk's virtual size on the running domain (QEMU rewrites the image header); `B` makes the size bytes, not KiB. */
  async blockResize(domain: string, target: string, bytes: number): Promise<void> {
    await this.virsh(['blockresize', '--', domain, target, `${bytes}B`]);
  }

  async abortJob(domain: string): Promise<void> {
    await this.virsh(['domjobabort', '--', domain]);
  }

}

/** `virsh domjobinfo` output: a job runs ("Job type" other than None) and it is an outgoing migration. */
export function isOutgoingMigrationJob(text: string): boolean {
  const field = (name: string) => new RegExp(`^\\s*${name}:\\s*(.+?)\\s*$`, 'm').exec(text)?.[1];
  const type = field('Job type');
  return type !== undefined && type !== 'None' && /^outgoing migration$/i.test(field('Operation') ?? '');
}

/** "paused (I/O error)" -> { state: 'paused', reason: 'I/O error' } */
export function parseDomState(text: string): DomainState {
  const match = /^\s*([a-z ]+?)\s*(?:\((.*)\))?\s*$/.exec(text.trim());
  if (!match) throw new LibvirtError(`cannot read domain state '${text.trim()}'`);
  return { state: match[1]!, reason: match[2] ?? '' };
}

export function parseBlockErrors(text: string): Map<string, string> {
  const errors = new Map<string, string>();
  for (const line of text.split('\n')) {
    const match = /^\s*(\S+): (.+)$/.exec(line);
    if (match && match[2] !== 'No errors found') errors.set(match[1]!, match[2]!.trim());
  }
  return errors;
}

export function parseBlockStats(text: string): BlockStats[] {
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    const match = /^\s*(block\.\d+\.[a-zA-Z.]+)=(.*)$/.exec(line);
    if (match) fields.set(match[1]!, match[2]!);
  }
  return blockStatsFromFields(fields);
}
