#!/usr/bin/env bash
# Makes this checkout ready for `npm run lab` and `npm test`: installs the
# Debian packages that are missing (and only those), installs the npm
# dependencies when package-lock.json changed, builds, and prepares the lab's
# boot image. Idempotent; on a prepared machine it takes a few seconds.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# qemu-system-x86, qemu-utils: the lab guest and qemu-img.
# libvirt-daemon-system, libvirt-clients: libvirtd, virsh, hooks.
# lvm2: the lvm storage plugin.  sanlock: the SPM lease.  rpm: rpmbuild.
# rpmlint: the package test checks the RPM and the spec with it; cpio and
# man-db: it unpacks the RPM's manual and reads it as man would.
# systemd: systemd-analyze, which checks the packaged units (tests only).
# busybox-static: the lab guest's userland.  util-linux: losetup, blkdiscard.
# gcc, libc6-dev: the tests build a test-only shim that lets the sanlock daemon
# start in sandboxes that cannot raise RLIMIT_MEMLOCK (test/fixtures).
# attr: setfattr, with which the tests clear libvirt's ownership records that a
# crashed run left on the lab's shared kernel and initrd.
# The Debian kernel for the lab guest is not installed: the lab unpacks the
# linux-image package into its cache (see src/lab/boot-image.ts), so the
# host's /boot and bootloader are never touched.
packages=(qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients lvm2 sanlock rpm rpmlint cpio man-db busybox-static util-linux gcc libc6-dev systemd attr)

say() { printf 'setup: %s\n' "$*"; }

missing=()
for package in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)
  [[ $status == installed ]] || missing+=("$package")
done

if ((${#missing[@]} > 0)); then
  if ((EUID != 0)); then
    say "missing Debian packages: ${missing[*]}; run this as root (or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Services are not started from package scripts: tests start their own daemons.
  policy=/usr/sbin/policy-rc.d
  created_policy=false
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    created_policy=true
  fi
  trap '[[ $created_policy == true ]] && rm -f "$policy"' EXIT
  timeout 600 apt-get update -qq
  timeout 1800 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  say "installed ${missing[*]}"
fi

# Some machines have a /dev/kvm node but no udev to give it Debian's usual
# group and mode (root:kvm 0660, udev's 50-udev-default rule). libvirtd then
# probes QEMU with KVM (its probe finds KVM working) but judges KVM unusable for
# the libvirt-qemu user, throws the fresh capabilities away and probes again,
# forever: every `virsh create` hangs. Apply the rule udev would have applied.
if ((EUID == 0)) && [[ -c /dev/kvm ]] && getent group kvm >/dev/null &&
  [[ $(stat -c '%G %a' /dev/kvm) == 'root 600' ]]; then
  say "giving /dev/kvm udev's group and mode (root:kvm 0660); no udev did"
  chgrp kvm /dev/kvm
  chmod 0660 /dev/kvm
fi

# npm dependencies: reinstall only when the lock file changed since the last install.
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
stamp=node_modules/.tideline-lock-sha256
if [[ ! -f $stamp || $(cat "$stamp") != "$lock_hash" ]]; then
  say "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
  printf '%s\n' "$lock_hash" >"$stamp"
fi

say "building"
npm run --silent build
chmod +x dist/cli/tideline.cjs

# The lab downloads Debian's kernel package; images often ship without apt lists.
if ((EUID == 0)) && ! apt-cache show linux-image-amd64 >/dev/null 2>&1; then
  say "refreshing apt lists (linux-image-amd64 unknown to apt)"
  timeout 600 apt-get update -qq
fi

# Building the boot image once here keeps parallel test workers from racing to build it.
node dist/cli/tideline.cjs lab --prepare-only
