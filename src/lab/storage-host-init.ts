import { initPrologue, VIRTIO_MODULES } from './guest-init.js';

/**
 * /init of a storage host guest: a hypervisor reduced to what the storage
 * path needs. It loads virtio, virtio-serial and device-mapper (with the
 * delay and flakey targets that simulate a slow or failing LUN), then runs
 * the QEMU guest agent on its virtio-serial port, through which tideline runs
 * LVM, qemu-img and qemu-io in the guest. The shared LUN is /dev/vda.
 */
export const STORAGE_HOST_MODULES = [...VIRTIO_MODULES, 'virtio_console', 'dm-mod', 'dm-delay', 'dm-flakey'] as const;
export const GUEST_AGENT_PORT = 'org.qemu.guest_agent.0';
export const STORAGE_HOST_MARKER = 'TIDELINE-HOST';

export function storageHostInitScript(): string {
  return `${initPrologue(STORAGE_HOST_MARKER)}mkdir -p /run/lock/lvm /run/lvm /tmp /var/tmp /root
for module in ${STORAGE_HOST_MODULES.join(' ')}; do
  insmod /lib/modules/$module.ko || say "error insmod-$module"
done
port=
for attempt in $(seq 1 50); do
  for candidate in /sys/class/virtio-ports/*; do
    [ "$(cat $candidate/name 2>/dev/null)" = "${GUEST_AGENT_PORT}" ] && port=/dev/$(basename $candidate)
  done
  [ -n "$port" ] && [ -c "$port" ] && [ -b /dev/vda ] && break
  sleep 0.1
done
if [ -z "$port" ]; then say "error no-agent-port"; poweroff -f; fi
[ -c /dev/mapper/control ] || say "error no-device-mapper"
say "ready port=$port"
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
qemu-ga --method=virtio-serial --path=$port --statedir=/run || say "error qemu-ga-exited"
poweroff -f
`;
}

/**
 * The guest's own /etc/lvm/lvm.conf. These guests have no udev, so LVM makes
 * its device nodes itself and lists devices without asking udev; a hypervisor
 * with udev keeps LVM's defaults here. Nothing in it is about sharing the VG:
 * that part is tideline's, passed on every command (docs/storage.md).
 */
export const STORAGE_HOST_LVM_CONF = `devices { obtain_device_list_from_udev = 0 }
activation { udev_sync = 0 udev_rules = 0 verify_udev_operations = 1 monitoring = 0 }
global { use_lvmpolld = 0 }
`;
