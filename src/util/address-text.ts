import { isIP } from 'node:net';

/** HOST:PORT as an admin writes it in tideline.conf: [v6]:PORT for IPv6. */
export function formatAddress(address: { host: string; port: number }): string {
  return isIP(address.host) === 6 ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

/** An IP address and a UDP port: where a doorbell listens, as the SPM names it in the reply slots. */
export interface UdpEndpoint {
  address: string;
  port: number;
}

export function formatEndpoint(endpoint: UdpEndpoint): string {
  return formatAddress({ host: endpoint.address, port: endpoint.port });
}

/** 0.0.0.0 or ::, which bind every address and say nothing about where a host is reached. */
export function isWildcardAddress(host: string): boolean {
  return host === '0.0.0.0' || host === '::';
}
