#!/bin/bash
# lab-image.sh builds the lab's Debian 12 disk image offline, from Debian's packages only
# (the apt mirror), without loop mounts: debootstrap into a directory, then the disk is
# assembled from partition-sized files.
#
#   hack/lab-image.sh OUT.raw.zst [WORKDIR]
#
# Layout (MBR, so one disk boots under SeaBIOS and OVMF):
#   p1  1 MiB .. 161 MiB  FAT32, type 0xEF, active, label RBBOOT: vmlinuz, initrd.img,
#       syslinux (BIOS: syslinux's mbr.bin → active partition → ldlinux) and
#       EFI/BOOT/BOOTX64.EFI (a standalone GRUB with its grub.cfg built in: UEFI firmware
#       takes an MBR partition of type 0xEF as the EFI system partition).
#   p2  ext4, label rootfs, the root filesystem (etc/cloud is where rackboot's agent
#       writes its cloud-init drop-in). cloud-init's growpart/resizefs grow it to the disk.
# Both loaders boot the same kernel line: root=PARTUUID=<disk id>-02 console=ttyS0.
#
# Needs root (debootstrap chroots) and: debootstrap mtools dosfstools syslinux
# syslinux-common grub-efi-amd64-bin e2fsprogs fdisk zstd.
# Environment: RACKBOOT_LAB_MIRROR (default http://deb.debian.org/debian),
# RACKBOOT_LAB_DEB_CACHE (a directory debootstrap keeps its .debs in between builds).
# Images built on top of the lab's (the Kubernetes node image, hack/node-image.sh) add:
#   RACKBOOT_IMAGE_PACKAGES   more Debian packages, comma-separated
#   RACKBOOT_IMAGE_OVERLAY    a directory copied over the root before the initramfs is built
#   RACKBOOT_IMAGE_SETUP      a script run inside the root (chroot, private mount namespace) after the overlay
#   RACKBOOT_IMAGE_PACKAGES_OUT  where to write the installed packages (name=version lines)
# Unset, they change nothing: the lab image's recipe stays what it was.
set -euo pipefail

out=${1:?usage: lab-image.sh OUT.raw.zst [WORKDIR]}
work=${2:-$(mktemp -d "${TMPDIR:-/tmp}/rackboot-lab-image.XXXXXX")}
mirror=${RACKBOOT_LAB_MIRROR:-http://deb.debian.org/debian}
suite=bookworm

if [ "$(id -u)" != 0 ]; then
	echo "lab-image: needs root (debootstrap chroots into the new system)" >&2
	exit 1
fi
for tool in debootstrap mformat mcopy mmd syslinux grub-mkstandalone mkfs.ext4 sfdisk zstd; do
	command -v "$tool" >/dev/null || {
		echo "lab-image: $tool missing: apt-get install debootstrap mtools dosfstools syslinux syslinux-common grub-efi-amd64-bin e2fsprogs fdisk zstd" >&2
		exit 1
	}
done

root=$work/root
mkdir -p "$work"
cleanup() {
	# debootstrap mounts proc/sys inside the target; never leave them behind.
	for m in proc sys dev/pts dev; do
		mountpoint -q "$root/$m" 2>/dev/null && umount -l "$root/$m" || true
	done
	rm -rf "$work"
}
trap cleanup EXIT

log() { echo "lab-image: $(date +%T) $*" >&2; }

# --- the root filesystem ------------------------------------------------------------------
# debootstrap does not resolve virtual packages: python3-cryptography (cloud-init, through
# python3-oauthlib) depends on python3-cffi-backend-api-*, which python3-cffi-backend provides.
# dbus and libpam-systemd: without them systemd-logind does not run, and the host ignores
# the ACPI power button (a BMC's soft power off) and SSH sessions get no logind session.
packages=python3-cffi-backend,linux-image-amd64,initramfs-tools,systemd-sysv,udev,kmod,ifupdown,isc-dhcp-client,iproute2,netbase,ifenslave,net-tools,resolvconf,cloud-init,cloud-guest-utils,openssh-server,sudo,zstd,dbus,libpam-systemd
if [ -n "${RACKBOOT_IMAGE_PACKAGES:-}" ]; then
	packages=$packages,$RACKBOOT_IMAGE_PACKAGES
fi
debcache=()
if [ -n "${RACKBOOT_LAB_DEB_CACHE:-}" ]; then
	mkdir -p "$RACKBOOT_LAB_DEB_CACHE"
	debcache=(--cache-dir="$(realpath "$RACKBOOT_LAB_DEB_CACHE")")
fi
log "debootstrap $suite from $mirror"
# No docs, man pages or translations: dpkg skips them from the first package it installs.
mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
cat >"$root/etc/dpkg/dpkg.cfg.d/01-rackboot-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
# A zstd-compressed initramfs (smaller than gzip, and quicker to unpack under TCG).
mkdir -p "$root/etc/initramfs-tools/conf.d"
printf 'MODULES=most\nCOMPRESS=zstd\n' >"$root/etc/initramfs-tools/conf.d/rackboot"
debootstrap --variant=minbase --include="$packages" "${debcache[@]}" "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
	tail -30 "$work/debootstrap.log" >&2
	cp "$root/debootstrap/debootstrap.log" "$out.debootstrap.log" 2>/dev/null && echo "lab-image: debootstrap's log: $out.debootstrap.log" >&2
	exit 1
}

log "configuring"
echo debian >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
# The disk id is fixed per build (below); the root is partition 2.
diskid=$(od -An -tx4 -N4 /dev/urandom | tr -d ' ')
rootdev=PARTUUID=$diskid-02
printf '%s\t/\text4\terrors=remount-ro\t0\t1\n' "$rootdev" >"$root/etc/fstab"
cat >"$root/etc/network/interfaces" <<'EOF'
# cloud-init writes the host's network configuration to interfaces.d/50-cloud-init.
auto lo
iface lo inet loopback
source /etc/network/interfaces.d/*
EOF
# NoCloud (the cloud.cfg.d drop-in rackboot's agent writes, or a CIDATA drive) first;
# a drop-in sorting after this one (99-rackboot.cfg) wins.
cat >"$root/etc/cloud/cloud.cfg.d/95-rackboot-lab.cfg" <<'EOF'
# rackboot lab image: no cloud metadata service to probe.
datasource_list: [NoCloud, None]
# The image has no locales package: C.UTF-8 is built into libc (en_US.UTF-8, cloud-init's
# default, fails the locale module).
locale: C.UTF-8
EOF
# Each host gets its own machine id and SSH host keys on first boot (systemd; cloud-init's
# ssh module regenerates the keys), so nothing secret is shared through the image.
: >"$root/etc/machine-id"
if [ -n "${RACKBOOT_IMAGE_OVERLAY:-}" ]; then
	log "overlay $RACKBOOT_IMAGE_OVERLAY"
	cp -a "$RACKBOOT_IMAGE_OVERLAY"/. "$root"/
fi
if [ -n "${RACKBOOT_IMAGE_SETUP:-}" ]; then
	log "setup $RACKBOOT_IMAGE_SETUP"
	install -m 0755 "$RACKBOOT_IMAGE_SETUP" "$root/rackboot-image-setup"
	# In a mount namespace of its own: what it mounts (/proc, a daemon's mounts) never
	# reaches the machine's, and is gone with it.
	unshare --mount --propagation private chroot "$root" /rackboot-image-setup >"$work/setup.log" 2>&1 || {
		cat "$work/setup.log" >&2
		exit 1
	}
	rm -f "$root/rackboot-image-setup"
fi
if [ -n "${RACKBOOT_IMAGE_PACKAGES_OUT:-}" ]; then
	chroot "$root" dpkg-query -W -f='${Package}=${Version}\n' >"$RACKBOOT_IMAGE_PACKAGES_OUT"
fi
rm -f "$root/var/lib/dbus/machine-id" "$root"/etc/ssh/ssh_host_*
chroot "$root" passwd -l root >/dev/null
rm -rf "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
	"$root"/var/log/*.log "$root"/tmp/* "$root"/usr/share/man/* "$root"/usr/share/info/*
find "$root/usr/share/doc" -type f ! -name copyright -delete 2>/dev/null || true
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} + 2>/dev/null || true
kver=$(basename "$(ls -d "$root"/lib/modules/*)")
[ -f "$root/boot/vmlinuz-$kver" ] && [ -f "$root/boot/initrd.img-$kver" ] || {
	echo "lab-image: no kernel/initrd for $kver in /boot" >&2
	exit 1
}
# Drivers a lab VM or a rack server never boots with (sound, GPUs, cameras, Wi-Fi,
# Bluetooth, InfiniBand, staging): about a third of the modules. The initramfs is rebuilt
# without them.
for d in sound drivers/gpu drivers/media drivers/net/wireless drivers/infiniband drivers/bluetooth \
	net/bluetooth net/mac80211 net/wireless drivers/staging drivers/iio drivers/isdn; do
	rm -rf "$root/lib/modules/$kver/kernel/$d"
done
chroot "$root" depmod "$kver"
chroot "$root" update-initramfs -u -k "$kver" >"$work/initramfs.log" 2>&1 || {
	cat "$work/initramfs.log" >&2
	exit 1
}
for m in proc sys dev/pts dev; do
	mountpoint -q "$root/$m" && umount -l "$root/$m" || true
done

# --- the boot partition (FAT32, no mount: mtools) -------------------------------------------
log "boot partition (kernel $kver)"
cmdline="root=$rootdev ro console=tty0 console=ttyS0,115200n8 net.ifnames=0"
bootmb=160
boot=$work/boot.fat
truncate -s ${bootmb}M "$boot"
# -H 2048: hidden sectors = the partition's first LBA, which syslinux's boot sector needs.
mformat -i "$boot" -F -H 2048 -v RBBOOT -N 52424f4f ::
cat >"$work/syslinux.cfg" <<EOF
SERIAL 0 115200
PROMPT 0
TIMEOUT 0
DEFAULT debian
LABEL debian
  KERNEL /vmlinuz
  APPEND initrd=/initrd.img $cmdline
EOF
cat >"$work/grub.cfg" <<EOF
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=0
# Without a video driver GRUB's linux loader says "no suitable video mode found".
insmod all_video
search --no-floppy --set=root --label RBBOOT
menuentry debian {
	linux /vmlinuz $cmdline
	initrd /initrd.img
}
EOF
grub-mkstandalone -O x86_64-efi -o "$work/BOOTX64.EFI" \
	--modules="part_msdos fat search search_label linux normal serial terminal echo all_video" \
	--locales= --themes= --fonts= \
	"boot/grub/grub.cfg=$work/grub.cfg"
mcopy -i "$boot" "$root/boot/vmlinuz-$kver" ::/vmlinuz
mcopy -i "$boot" "$root/boot/initrd.img-$kver" ::/initrd.img
mcopy -i "$boot" "$work/syslinux.cfg" ::/syslinux.cfg
mmd -i "$boot" ::/EFI ::/EFI/BOOT
mcopy -i "$boot" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
# syslinux (the mtools build) installs ldlinux.sys/ldlinux.c32 and its boot sector into
# the unmounted FAT image.
syslinux --install "$boot"

# --- the root partition: ext4 filled from the directory (mkfs.ext4 -d, no mount) ----------
log "root partition"
used=$(du -sxm "$root" | cut -f1)
rootmb=$(((used * 5 / 4 + 256 + 3) / 4 * 4))
rootimg=$work/root.ext4
mkfs.ext4 -q -F -L rootfs -d "$root" "$rootimg" ${rootmb}M

# --- the disk ----------------------------------------------------------------------------
log "disk: boot ${bootmb} MiB, root ${rootmb} MiB (${used} MiB used)"
raw=$work/disk.raw
truncate -s $((1 + bootmb + rootmb))M "$raw"
sfdisk -q "$raw" <<EOF
label: dos
label-id: 0x$diskid
unit: sectors
start=2048, size=$((bootmb * 2048)), type=ef, bootable
start=$(((1 + bootmb) * 2048)), size=$((rootmb * 2048)), type=83
EOF
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$raw" bs=440 count=1 conv=notrunc status=none
dd if="$boot" of="$raw" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$rootimg" of="$raw" bs=1M seek=$((1 + bootmb)) conv=notrunc,sparse status=none

log "compressing"
zstd -q -T0 -10 -f "$raw" -o "$out.tmp"
mv "$out.tmp" "$out"
log "done: $out ($(du -m "$raw" | cut -f1) MiB raw sparse, $(du -m "$out" | cut -f1) MiB zstd)"
