import { escapeXml } from '../lab/libvirt-domain.js';

/**
 * The `virsh snapshot-create --disk-only --reuse-external` document that
 * switches a running domain's disks onto new top layers that tideline already
 * created (pure). The new layer of each named disk is a block device (an LV,
 * or the lab's loop device); every other disk of the domain is left alone
 * (snapshot='no'), so a snapshot of vda never touches vdb.
 */
export interface NewTop {
  target: string;
  devicePath: string;
}

export function externalSnapshotXml(newTops: readonly NewTop[], otherTargets: readonly string[]): string {
  const disks = [
    ...newTops.map((top) => `    <disk name='${escapeXml(top.target)}' snapshot='external' type='block'>\n      <driver type='qcow2'/>\n      <source dev='${escapeXml(top.devicePath)}'/>\n    </disk>`),
    ...otherTargets.map((target) => `    <disk name='${escapeXml(target)}' snapshot='no'/>`),
  ];
  return `<domainsnapshot>\n  <description>tideline snapshot</description>\n  <disks>\n${disks.join('\n')}\n  </disks>\n</domainsnapshot>\n`;
}

const NAME_LIMIT = 128;

/** A name for the new top layer of one disk: `DOMAIN-TARGET-YYYYMMDDHHMMSS`, trimmed from the left to the volume name limit and to the characters volume names allow. */
export function snapshotVolumeName(domain: string, target: string, at: Date): string {
  const stamp = at.toISOString().replace(/[-:T]/g, '').slice(0, 14);
  const cleaned = `${domain}-${target}`.replace(/[^A-Za-z0-9_.+-]/g, '_').replace(/^[.-]+/, '');
  const suffix = `-${stamp}`;
  return `${cleaned.slice(-(NAME_LIMIT - suffix.length)) || 'snapshot'}${suffix}`;
}
