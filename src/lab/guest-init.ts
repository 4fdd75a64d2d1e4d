/**
 * The lab guest's /init: a busybox shell script that loads the virtio block
 * driver, writes known data onto /dev/vda, reads all of it back, and reports
 * on the serial console.
 *
 * The disk is written in 16 MiB units: a 4 KiB header naming the unit, then
 * one random body shared by all units. A unit read back must carry its own
 * header (data at the wrong offset fails) and a body with the body's md5 (any
 * corrupted byte fails). Measured under TCG, busybox through a pipe hashes at
 * ~25 MB/s but a file in tmpfs at ~100 MB/s and dd with O_DIRECT moves
 * ~700 MB/s, so the script never pipes bulk data.
 */

/** Load order matters: each module needs the ones before it (no modprobe, no depmod in the guest). */
export const VIRTIO_MODULES = ['virtio_ring', 'virtio', 'virtio_pci_legacy_dev', 'virtio_pci_modern_dev', 'virtio_pci', 'virtio_blk'] as const;

/** Lines the guest prints start with this, so the host can tell them from kernel messages. */
export const GUEST_MARKER = 'TIDELINE';
export const UNIT_MIB = 16;

/**
 * The start of every lab guest's /init: busybox's applets, /proc, /sys and
 * /dev, and `say`, which prints a line the host can tell from kernel messages.
 */
export function initPrologue(marker: string): string {
  return `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say() { echo "${marker} $*"; }
`;
}

export function guestInitScript(): string {
  return `${initPrologue(GUEST_MARKER)}param() { sed -n "s/.*tideline\\.$1=\\([^ ]*\\).*/\\1/p" /proc/cmdline; }
uptime_cs() { sed 's/\\.//; s/ .*//' /proc/uptime; }
for module in ${VIRTIO_MODULES.join(' ')}; do
  insmod /lib/modules/$module.ko || say "error insmod-$module"
done
DISK=/dev/vda
UNIT=$((${UNIT_MIB} * 1048576))
HEADER=4096
BODY=$((UNIT - HEADER))
UNITS=$(( $(param write_mib) / ${UNIT_MIB} ))
for attempt in $(seq 1 50); do [ -b $DISK ] && break; sleep 0.2; done
if [ ! -b $DISK ]; then say "error no-disk"; poweroff -f; fi
dd if=/dev/urandom of=/tmp/body bs=$BODY count=1 2>/dev/null
BODY_SUM=$(md5sum /tmp/body | cut -c1-32)
header() { printf 'tideline unit %012d of %012d\\n' $1 $UNITS | dd of=/tmp/header bs=$HEADER count=1 conv=sync 2>/dev/null; }
say "ready units=$UNITS unit_mib=${UNIT_MIB}"
started=$(uptime_cs)
unit=0
while [ $unit -lt $UNITS ]; do
  header $unit
  offset=$((unit * UNIT))
  dd if=/tmp/header of=$DISK bs=$HEADER oflag=direct,seek_bytes seek=$offset 2>/tmp/dd.log || say "error write-failed unit=$unit"
  dd if=/tmp/body of=$DISK bs=1M oflag=direct,seek_bytes seek=$((offset + HEADER)) 2>/tmp/dd.log || say "error write-failed unit=$unit"
  unit=$((unit + 1))
  # Every 64 MiB: tests wait for the guest to reach a point before they act.
  [ $((unit % 4)) -eq 0 ] && say "progress written_mib=$((unit * ${UNIT_MIB}))"
done
written=$(uptime_cs)
say "written centiseconds=$((written - started))"
bad=0
unit=0
while [ $unit -lt $UNITS ]; do
  header $unit
  offset=$((unit * UNIT))
  dd if=$DISK of=/tmp/read-header bs=$HEADER count=1 iflag=direct,skip_bytes skip=$offset 2>/dev/null
  dd if=$DISK of=/tmp/read-body bs=1M iflag=direct,skip_bytes,count_bytes skip=$((offset + HEADER)) count=$BODY 2>/dev/null
  if ! cmp -s /tmp/read-header /tmp/header; then bad=$((bad + 1)); say "mismatch unit=$unit part=header"
  elif [ "$(md5sum /tmp/read-body | cut -c1-32)" != "$BODY_SUM" ]; then bad=$((bad + 1)); say "mismatch unit=$unit part=body"
  fi
  unit=$((unit + 1))
done
say "read centiseconds=$(($(uptime_cs) - written))"
say "result units=$UNITS bad=$bad body_md5=$BODY_SUM"
poweroff -f
`;
}
