import { TideError } from '../src/errors.js';

export class VolumeNotFoundError extends TideError {
  readonly code = 'volume-not-found';

  constructor(readonly volume: string, readonly domain: string, options?: ErrorOptions) {
    super(`volume ${volume} does not exist in storage domain ${domain}; check the name with 'tideline volume list'`, options);
  }
}

export class VolumeExistsError extends TideError {
  readonly code = 'volume-exists';

  constructor(readonly volume: string, readonly domain: string) {
    super(`volume ${volume} already exists in storage domain ${domain}; pick another name or remove it first`);
  }
}

export class DomainFullError extends TideError {
  readonly code = 'domain-full';

  constructor(readonly volume: string, readonly domain: string, readonly neededBytes: number, readonly freeBytes: number) {
    super(
      `storage domain ${domain} has ${freeBytes} bytes free but volume ${volume} needs ${neededBytes} more; ` +
        'add space to the storage domain (grow the LUN and pvresize, or free volumes)',
    );
  }
}

export class ShrinkRefusedError extends TideError {
  readonly code = 'shrink-refused';

  constructor(readonly volume: string, readonly currentBytes: number, readonly targetBytes: number) {
    super(`refusing to shrink volume ${volume} from ${currentBytes} to ${targetBytes} bytes: thin volumes only grow, shrinking would destroy guest data`);
  }
}

export class InvalidVolumeNameError extends TideError {
  readonly code = 'invalid-volume-name';

  constructor(readonly volume: string) {
    super(`"${volume}" is not a valid volume name: use 1-128 characters of letters, digits and _ . + -, not starting with - or .`);
  }
}

/** LVM refused a metadata change because this host runs it read-only: only the SPM changes the VG. */
export class MetadataReadOnlyError extends TideError {
  readonly code = 'metadata-read-only';

  constructor(readonly command: string, readonly target: string) {
    super(`${command} of ${target} refused: this host runs LVM read-only because it is not the SPM; ask the SPM (through the agent and the mailbox) to change the volume group`);
  }
}

export class StorageDomainError extends TideError {
  readonly code = 'storage-domain';
}

const VOLUME_NAME = /^[A-Za-z0-9_+][A-Za-z0-9_.+-]{0,127}$/;

/** LVM's own rules for LV names, applied to every backend so names move between them. */
export function assertVolumeName(volume: string): void {
  if (!VOLUME_NAME.test(volume)) throw new InvalidVolumeNameError(volume);
}
