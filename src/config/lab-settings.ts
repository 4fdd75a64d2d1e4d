import { z } from 'zod';
import { InvalidConfigError } from '../errors.js';
import { MiB } from '../util/sizes.js';
import { formatIssues, sizeField } from './sizes-schema.js';

/** Everything `tideline lab` can be told, validated once. */
export const labSettingsSchema = z
  .object({
    write: sizeField('--write').default(2048 * MiB),
    virtualSize: sizeField('--virtual-size').default(4096 * MiB),
    initialSize: sizeField('--initial-size').default(128 * MiB),
    chunk: sizeField('--chunk').default(128 * MiB),
    freeTarget: sizeField('--free-target').default(96 * MiB),
    adaptive: z.boolean().default(false),
    monitor: z.boolean().default(true),
    extendDelayMs: z.number().int().min(0).max(600_000).default(0),
    keep: z.boolean().default(false),
    timeoutSeconds: z.number().int().positive().default(600),
    /** Where the chart of volume size and high-water over time goes; '' for none. */
    chart: z.string().refine((value) => value === '' || value.startsWith('/'), 'must be an absolute path (or empty for no chart)').default(''),
  })
  .superRefine((settings, context) => {
    const unit = 16 * MiB;
    if (settings.write < unit || settings.write % unit !== 0) context.addIssue({ code: 'custom', path: ['write'], message: 'must be a positive multiple of 16M (the guest writes 16 MiB units)' });
    if (settings.write > settings.virtualSize) context.addIssue({ code: 'custom', path: ['write'], message: `cannot exceed the virtual size (${settings.virtualSize} bytes)` });
    if (settings.initialSize < MiB) context.addIssue({ code: 'custom', path: ['initialSize'], message: 'must be at least 1M (room for the qcow2 header)' });
    if (settings.chunk < MiB) context.addIssue({ code: 'custom', path: ['chunk'], message: 'must be at least 1M' });
    if (settings.freeTarget > settings.chunk) context.addIssue({ code: 'custom', path: ['freeTarget'], message: 'must not exceed the chunk, or every extension would trigger the next at once' });
  });

export type LabSettings = z.infer<typeof labSettingsSchema>;

export function parseLabSettings(input: unknown): LabSettings {
  const result = labSettingsSchema.safeParse(input);
  if (!result.success) throw new InvalidConfigError(`invalid lab settings: ${formatIssues(result.error)}`);
  return result.data;
}
