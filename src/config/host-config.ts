import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { InvalidConfigError } from '../errors.js';
import { readConfigLines } from './config-lines.js';
import { addressList, listenAddress } from './listen-address.js';
import { sizeField } from './sizes-schema.js';

/**
 * /etc/tideline/tideline.conf: host-wide settings as `key = value` lines,
 * `#` comments. Parsed (pure) and validated once; every error names its line.
 */
export const DEFAULT_CONFIG_FILE = '/etc/tideline/tideline.conf';

export const hostConfigSchema = z
  .object({
    vg: z.string().regex(/^[A-Za-z0-9_+.-]+$/, 'is not a valid VG name').optional(),
    'loop-domain': z.string().startsWith('/', 'must be an absolute path').optional(),
    /** A loop domain shared by several lab hosts on one machine: this host's own loop devices (plugins/loop/device-views.ts). */
    'loop-view': z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be 1-64 letters, digits, _ . or -').optional(),
    mailbox: z.string().startsWith('/', 'must be an absolute path').optional(),
    'host-id': z.coerce.number().int().min(1).max(2000).optional(),
    chunk: sizeField('chunk').optional(),
    'free-target': sizeField('free-target').optional(),
    'max-size': sizeField('max-size').optional(),
    'control-socket': z.string().startsWith('/', 'must be an absolute path').optional(),
    // The SPM's side: the same file, so the host id and the mailbox are written once for both services.
    lease: z.string().startsWith('/', 'must be an absolute path').optional(),
    'lease-backend': z.enum(['sanlock', 'storage'], { message: "must be 'sanlock' or 'storage' (the built-in lease)" }).optional(),
    ids: z.string().startsWith('/', 'must be an absolute path').optional(),
    lockspace: z.string().regex(/^[A-Za-z0-9_.-]{1,48}$/, 'must be 1-48 letters, digits, _ . or -').optional(),
    'lease-expiry': z.coerce.number().min(0.5).max(600).optional(),
    // The doorbell (src/doorbell): where this host's SPM listens while it serves, and whom this host's agent rings.
    doorbell: listenAddress.optional(),
    'spm-doorbells': addressList.optional(),
  })
  .strict();

export type HostConfig = z.infer<typeof hostConfigSchema>;

export function parseHostConfig(text: string, file = DEFAULT_CONFIG_FILE): HostConfig {
  const { values, lineOf } = readConfigLines(text, file);
  const parsed = hostConfigSchema.safeParse(values);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = issue.code === 'unrecognized_keys' ? (issue as unknown as { keys: string[] }).keys[0]! : String(issue.path[0]);
    const where = lineOf[key] ? `${file}:${lineOf[key]}` : file;
    const message = issue.code === 'unrecognized_keys' ? `unknown setting '${key}'` : `${key} ${issue.message}`;
    throw new InvalidConfigError(`${where}: ${message}`);
  }
  if (parsed.data.vg && parsed.data['loop-domain']) throw new InvalidConfigError(`${file}: set either vg or loop-domain, not both`);
  if (parsed.data['loop-view'] !== undefined && !parsed.data['loop-domain']) throw new InvalidConfigError(`${file}: loop-view is for a loop-domain; an LVM host has its own device-mapper table already`);
  return parsed.data;
}

/** The host configuration, or undefined when this host has none (tideline not set up here). */
export async function loadHostConfig(file = process.env.TIDELINE_CONFIG ?? DEFAULT_CONFIG_FILE): Promise<HostConfig | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new InvalidConfigError(`cannot read ${file}: ${(error as Error).message}`, { cause: error });
  }
  return parseHostConfig(text, file);
}
