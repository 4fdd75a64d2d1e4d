import { z } from 'zod';
import { InvalidConfigError } from '../errors.js';

/** HOST:PORT for a listening socket (metrics); [v6]:PORT for IPv6. */
export const listenAddress = z.string().transform((value, context) => {
  const match = /^(?:\[([0-9a-fA-F:]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  const port = Number(match?.[3]);
  if (!match || port < 1 || port > 65535) {
    context.addIssue({ code: 'custom', message: `'${value}' is not HOST:PORT (for example 127.0.0.1:9471)` });
    return z.NEVER;
  }
  return { host: match[1] ?? match[2]!, port };
});

export type ListenAddress = z.output<typeof listenAddress>;

/** HOST:PORT, HOST:PORT, ...: one or more addresses, comma separated. */
export const addressList = z.string().transform((value, context) => {
  const addresses: ListenAddress[] = [];
  for (const entry of value.split(',').map((part) => part.trim())) {
    const parsed = listenAddress.safeParse(entry);
    if (!parsed.success) {
      for (const issue of parsed.error.issues) context.addIssue({ code: 'custom', message: issue.message });
      return z.NEVER;
    }
    addresses.push(parsed.data);
  }
  return addresses;
});

export function parseListenAddress(value: string, flag: string): ListenAddress {
  return parseAt(listenAddress, value, flag);
}

export function parseAddressList(value: string, flag: string): ListenAddress[] {
  return parseAt(addressList, value, flag);
}

function parseAt<T>(schema: z.ZodType<T, string>, value: string, flag: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new InvalidConfigError(`${flag}: ${parsed.error.issues.map((issue) => issue.message).join('; ')}`);
  return parsed.data;
}
