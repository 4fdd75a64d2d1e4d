import { z } from 'zod';
import { InvalidConfigError } from '../errors.js';
import { DEFAULT_POLICY, type PolicySettings } from '../monitor/policy.js';
import { DEFAULT_STATUS_FILE } from '../agent/status-file.js';
import { listenAddress } from './listen-address.js';
import { formatIssues, sizeField } from './sizes-schema.js';

/** Everything `tideline agent` can be told, validated once. */
const qmpTarget = z.string().transform((value, context) => {
  // "web01=/run/web01.qmp" names the VM; a bare path names it after the socket file.
  const separator = value.indexOf('=');
  const [vm, socketPath] = separator > 0 ? [value.slice(0, separator), value.slice(separator + 1)] : [value.replace(/^.*\//, '').replace(/\.(qmp|sock|monitor)$/, ''), value];
  if (!socketPath.startsWith('/')) {
    context.addIssue({ code: 'custom', message: `QMP socket '${socketPath}' must be an absolute path` });
    return z.NEVER;
  }
  return { vm, socketPath };
});

export const agentSettingsSchema = z
  .object({
    qmp: z.array(qmpTarget).default([]),
    chunk: sizeField('--chunk').default(DEFAULT_POLICY.chunkBytes),
    freeTarget: sizeField('--free-target').default(DEFAULT_POLICY.freeTargetBytes),
    maxSize: sizeField('--max-size').optional(),
    adaptive: z.boolean().default(false),
    statusFile: z.string().default(DEFAULT_STATUS_FILE),
    metricsListen: listenAddress.optional(),
    pollSeconds: z.number().positive().max(3600).default(5),
  })
  .superRefine((settings, context) => {
    if (settings.freeTarget > settings.chunk) context.addIssue({ code: 'custom', path: ['freeTarget'], message: 'must not exceed the chunk, or every extension would trigger the next at once' });
    const names = settings.qmp.map((target) => target.vm);
    const duplicate = names.find((name, index) => names.indexOf(name) !== index);
    if (duplicate) context.addIssue({ code: 'custom', path: ['qmp'], message: `VM name '${duplicate}' is given twice; name sockets as NAME=PATH` });
  });

export type AgentSettings = z.infer<typeof agentSettingsSchema>;

export function parseAgentSettings(input: unknown): AgentSettings {
  const result = agentSettingsSchema.safeParse(input);
  if (!result.success) throw new InvalidConfigError(`invalid agent settings: ${formatIssues(result.error)}`);
  return result.data;
}

export function agentPolicy(settings: AgentSettings, extentBytes: number): PolicySettings {
  return {
    ...DEFAULT_POLICY,
    chunkBytes: settings.chunk,
    freeTargetBytes: settings.freeTarget,
    extentBytes,
    adaptive: settings.adaptive,
    adaptiveMaxChunkBytes: Math.max(DEFAULT_POLICY.adaptiveMaxChunkBytes, settings.chunk),
  };
}
