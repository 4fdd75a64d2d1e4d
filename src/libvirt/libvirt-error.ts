import { TideError } from '../errors.js';

/** libvirt refused or failed a request, whether asked through virsh or over its socket. */
export class LibvirtError extends TideError {
  readonly code = 'libvirt';
}
