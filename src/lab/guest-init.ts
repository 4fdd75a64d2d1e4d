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
UNIT=$((${UNIT_MIB} * 1048576))
HEADER=4096
BODY=$((UNIT - HEADER))
dd if=/dev/urandom of=/tmp/body bs=$BODY count=1 2>/dev/null
BODY_SUM=$(md5sum /tmp/body | cut -c1-32)
header() { printf 'tideline unit %012d of %012d\n' $1 $UNITS | dd of=/tmp/header bs=$HEADER count=1 conv=sync 2>/dev/null; }
disk_bytes() { echo $(( $(cat /sys/block/$1/size) * 512 )); }
# Writes UNITS units onto DISK, then reads every one back and reports. With
# tideline.grow_wait=1 a unit past the disk's current end waits for the disk to
# grow (an administrator's blockresize) instead of failing.
write_and_verify() {
  DISK=/dev/$1
  UNITS=$2
  for attempt in $(seq 1 \${3:-50}); do [ -b $DISK ] && break; sleep 0.2; done
  if [ ! -b $DISK ]; then say "error no-disk disk=$1"; return; fi
  say "ready units=$UNITS unit_mib=${UNIT_MIB} disk=$1"
  started=$(uptime_cs)
  unit=0
  while [ $unit -lt $UNITS ]; do
    header $unit
    offset=$((unit * UNIT))
    if [ "$(param grow_wait)" = 1 ] && [ $((offset + UNIT)) -gt $(disk_bytes $1) ]; then
      say "waiting-for-growth disk=$1 bytes=$(disk_bytes $1)"
      while [ $((offset + UNIT)) -gt $(disk_bytes $1) ]; do sleep 0.2; done
    fi
    dd if=/tmp/header of=$DISK bs=$HEADER oflag=direct,seek_bytes seek=$offset 2>/tmp/dd.log || say "error write-failed unit=$unit disk=$1"
    dd if=/tmp/body of=$DISK bs=1M oflag=direct,seek_bytes seek=$((offset + HEADER)) 2>/tmp/dd.log || say "error write-failed unit=$unit disk=$1"
    unit=$((unit + 1))
    # Every 64 MiB: tests wait for the guest to reach a point before they act.
    [ $((unit % 4)) -eq 0 ] && say "progress written_mib=$((unit * ${UNIT_MIB})) disk=$1"
  done
  written=$(uptime_cs)
  say "written centiseconds=$((written - started)) disk=$1"
  verify $1 $UNITS
}
# Reads UNITS units of DISK back and reports (the result line carries ROUND when one is given).
verify() {
  DISK=/dev/$1
  UNITS=$2
  written=$(uptime_cs)
  bad=0
  unit=0
  while [ $unit -lt $UNITS ]; do
    header $unit
    offset=$((unit * UNIT))
    dd if=$DISK of=/tmp/read-header bs=$HEADER count=1 iflag=direct,skip_bytes skip=$offset 2>/dev/null
    dd if=$DISK of=/tmp/read-body bs=1M iflag=direct,skip_bytes,count_bytes skip=$((offset + HEADER)) count=$BODY 2>/dev/null
    if ! cmp -s /tmp/read-header /tmp/header; then bad=$((bad + 1)); say "mismatch unit=$unit part=header disk=$1"
    elif [ "$(md5sum /tmp/read-body | cut -c1-32)" != "$BODY_SUM" ]; then bad=$((bad + 1)); say "mismatch unit=$unit part=body disk=$1"
    fi
    unit=$((unit + 1))
  done
  say "read centiseconds=$(($(uptime_cs) - written)) disk=$1"
  say "result units=$UNITS bad=$bad body_md5=$BODY_SUM disk=$1\${3:+ round=$3}"
}
VDA_UNITS=$(( $(param write_mib) / ${UNIT_MIB} ))
write_and_verify vda $VDA_UNITS
# tideline.second_mib=N: then a disk hot-plugged as vdb (waited for up to 10 minutes) is written and verified too.
second=$(param second_mib)
[ -n "$second" ] && write_and_verify vdb $((second / ${UNIT_MIB})) 3000
# tideline.linger=1: stay up, so that the host can go on acting on the domain (unplug, save, restore). Each time
# the host then plugs in another disk, whatever its name (the guest's kernel names disks in the order it finds them:
# libvirt's vdc is this guest's vdb once vdb was unplugged), vda is read back again: round 1, 2, ...
other_disks() { ls /sys/block | grep -v '^vda$' | grep -c '^vd'; }
if [ "$(param linger)" = 1 ]; then
  say "done"
  round=0
  while true; do
    while [ "$(other_disks)" = 0 ]; do sleep 0.5; done
    round=$((round + 1))
    verify vda $VDA_UNITS $round
    while [ "$(other_disks)" != 0 ]; do sleep 0.5; done
  done
fi
poweroff -f
`;
}
