import { z } from 'zod';
import { parseSize } from '../util/sizes.js';

/** A size given as bytes or text ("256M", "2.5G"), validated into bytes once, at the edge. */
export function sizeField(what: string) {
  return z.union([z.string(), z.number()]).transform((value, context) => {
    try {
      return parseSize(value, what);
    } catch (error) {
      context.addIssue({ code: 'custom', message: (error as Error).message });
      return z.NEVER;
    }
  });
}

export function formatIssues(error: z.ZodError): string {
  return error.issues.map((issue) => `${issue.path.join('.') || 'value'}: ${issue.message}`).join('; ');
}
