import type { BootImage } from './boot-image.js';

/**
 * The lab guest as a libvirt domain (TCG), with the same kernel, initramfs
 * and disk wiring as the QEMU the lab starts itself: one virtio disk, qcow2 on
 * a block device, error_policy='stop' so that a write finding no space pauses
 * the VM instead of failing in the guest.
 */
export interface LabDomainSpec {
  name: string;
  boot: BootImage;
  devicePath: string;
  consoleLog: string;
  writeMib: number;
  memoryMib?: number;
  /** Extra XML inside <metadata> (tideline policy). */
  metadata?: string;
  /** libvirt's error_policy; 'stop' unless a test wants to show what happens without it. */
  errorPolicy?: 'stop' | 'report';
  /** More guest parameters (`tideline.grow_wait=1 tideline.second_mib=256 tideline.linger=1`: src/lab/guest-init.ts). */
  guestParameters?: string;
  /**
   * 'pc' (i440fx) for a guest that gets disks attached while it runs: its
   * ACPI PCI hotplug works with the lab kernel, where a q35 root port's
   * hotplug re-enumerated the guest's bridges and never showed the disk.
   */
  machine?: 'q35' | 'pc';
}

export function labDomainXml(spec: LabDomainSpec): string {
  return `<domain type='qemu'>
  <name>${escapeXml(spec.name)}</name>
  <memory unit='MiB'>${spec.memoryMib ?? 256}</memory>
  <vcpu>1</vcpu>
  <metadata>${spec.metadata ?? ''}</metadata>
  <os>
    <type arch='x86_64' machine='${spec.machine ?? 'q35'}'>hvm</type>
    <kernel>${escapeXml(spec.boot.kernel)}</kernel>
    <initrd>${escapeXml(spec.boot.initrd)}</initrd>
    <cmdline>console=ttyS0 quiet panic=-1 tideline.write_mib=${spec.writeMib}${spec.guestParameters ? ` ${escapeXml(spec.guestParameters)}` : ''}</cmdline>
  </os>
${spec.machine === 'pc' ? '  <features><acpi/></features>\n' : ''}  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='block' device='disk'>
      <driver name='qemu' type='qcow2' cache='none' io='native' error_policy='${spec.errorPolicy ?? 'stop'}' rerror_policy='${spec.errorPolicy ?? 'stop'}'/>
      <source dev='${escapeXml(spec.devicePath)}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'>
      <source path='${escapeXml(spec.consoleLog)}' append='on'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
</domain>
`;
}

export function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/'/g, '&apos;').replace(/"/g, '&quot;');
}
