/**
 * Which local socket serves a libvirt URI, chosen as libvirt's own client
 * does for a UNIX transport: the per-driver daemon's socket (virtqemud) when
 * it exists, else the monolithic libvirtd's. Only the URIs tideline can
 * answer itself are mapped; any other (ssh, tls, a session URI, extra
 * parameters, the test driver) is left to virsh (undefined).
 */
export const LIBVIRT_RUN_DIRECTORY = '/run/libvirt';

export interface LocalEndpoint {
  socket: string;
  /** The URI the daemon is asked to open, without the transport part. */
  name: string;
}

export function localEndpointFor(uri: string, exists: (path: string) => boolean, runDirectory = LIBVIRT_RUN_DIRECTORY): LocalEndpoint | undefined {
  let parsed: URL;
  try {
    parsed = new URL(uri);
  } catch {
    return undefined;
  }
  if (parsed.host !== '' || parsed.pathname !== '/system' || parsed.hash !== '') return undefined;
  const parameters = [...parsed.searchParams.keys()];
  const local = parsed.protocol === 'qemu:' || parsed.protocol === 'qemu+unix:';
  if (local && parameters.length === 0) {
    const perDriver = `${runDirectory}/virtqemud-sock`;
    const monolithic = `${runDirectory}/libvirt-sock`;
    if (exists(perDriver)) return { socket: perDriver, name: 'qemu:///system' };
    if (exists(monolithic)) return { socket: monolithic, name: 'qemu:///system' };
    return undefined;
  }
  const socket = parsed.searchParams.get('socket');
  if (parsed.protocol === 'qemu+unix:' && parameters.length === 1 && socket) return { socket, name: 'qemu:///system' };
  return undefined;
}
