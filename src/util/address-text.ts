import { isIP } from 'node:net';

/** HOST:PORT as an admin writes it in tideline.conf: [v6]:PORT for IPv6. */
export function formatAddress(address: { host: string; port: number }): string {
  return isIP(address.host) === 6 ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}
